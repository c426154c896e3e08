"""A throwaway PostgreSQL cluster on a free loopback port, for DuckLake's catalog in tests and benches.

Debian's postgresql package (/usr/lib/postgresql/<version>/bin) runs as the `postgres` user when we
are root; the cluster's folder is removed when it stops."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + pg_ctl start on 127.0.0.1:port with trust authentication for the `postgres` user."""

    def __init__(self):
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl)")
        self.folder = Path(tempfile.mkdtemp(prefix="mms-pg-"))
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")

    def _run(self, *args: str) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + list(args)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "Cluster":
        data = self.folder / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
                  "start")
        return self

    def create_db(self, name: str) -> str:
        """A new database; returns its DuckLake catalog URL."""
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"ducklake:postgres:dbname={name} host=127.0.0.1 port={self.port} user=postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


def pause(cluster: Cluster) -> None:
    """Stop the cluster's server at once (as a crash would), keeping its data for `resume`."""
    cluster._run(str(cluster.bin / "pg_ctl"), "-D", str(cluster.folder / "data"), "-m", "immediate", "-w", "stop")


def resume(cluster: Cluster) -> None:
    """Start a paused cluster again on the same port."""
    cluster._run(str(cluster.bin / "pg_ctl"), "-D", str(cluster.folder / "data"), "-l", str(cluster.folder / "log"),
                 "-w", "-o", f"-p {cluster.port} -k {cluster.folder} -c listen_addresses=127.0.0.1 "
                             f"-c max_connections=200 -c fsync=off", "start")
