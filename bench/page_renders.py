"""Every dashboard page rendered through AppTest (as tests/conftest.py's `app` fixture runs
them: app.py with its st.navigation) on the full demo store: the first render of each page in
a new session, and a second render (a rerun of that session, as after a click).

    python bench/page_renders.py [--store PATH]

Without --store, the demo store is built with core.demo.build_store's defaults in a temporary
folder (deleted at the end). Before measuring, every page is rendered once on an empty store,
so that the first renders count the page's data, not Python importing its modules.
"""
import argparse
import shutil
import tempfile
from pathlib import Path

import _apptest
from _common import header, peak_rss_mb, timer
from core import demo
from core.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="render the pages on this store instead of a new demo store")
    args = parser.parse_args()
    header("dashboard pages through AppTest")
    folder = None if args.store else Path(tempfile.mkdtemp(prefix="mms-bench-pages-"))
    try:
        if args.store:
            store = Store(args.store)
        else:
            store = Store(folder / "mms.duckdb")
            with timer() as t:
                demo.build_store(store)
            print(f"demo store (build_store defaults) built in {t.seconds:.1f} s")
        _apptest.warm_up()
        print(f"{'page':22} {'first render':>13} {'second render':>14}   (target < 2 s)")
        with _apptest.Dashboard(store.path) as dashboard:
            for page in _apptest.PAGES:
                at, first = dashboard.open(page)
                with timer() as second:
                    at.run()
                _apptest.check(at)
                print(f"{page:22} {first:12.2f}s {second.seconds:13.2f}s")
        print(f"peak memory: {peak_rss_mb():.0f} MB")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
