"""Pytest fixtures for DuckLake stores: one throwaway PostgreSQL cluster per test session, one
database and data folder per store. Tests that need it skip only when initdb/pg_ctl are missing."""
from __future__ import annotations

import itertools

import pytest

import pgcluster
from core.store import Store

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster():
    if pgcluster.pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl): tests/setup.sh installs Debian's postgresql")
    cluster = pgcluster.Cluster().start()
    yield cluster
    cluster.stop()


def new_lake(cluster: pgcluster.Cluster, folder) -> Store:
    """An empty DuckLake store: a fresh catalog database and a data folder under `folder`."""
    url = cluster.create_db(f"lake{next(_names)}")
    return Store(url, str(folder / "lake") + "/")


@pytest.fixture
def lake_store(pg_cluster, tmp_path) -> Store:
    return new_lake(pg_cluster, tmp_path)
