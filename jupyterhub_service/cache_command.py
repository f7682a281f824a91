"""Show or clear the preload cache.

    python -m jupyterhub_service.cache_command               # size and entries
    python -m jupyterhub_service.cache_command clear         # everything not in use
    python -m jupyterhub_service.cache_command clear --dataset <id>

Entries used by live sessions are always kept. Reads the same settings as
the hub (``CKAN_STORAGE_NOTEBOOK``, ``JUPYTERNOTEBOOK_STATE_DIR``, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from . import settings as settings_module
from .preload import ResourceCache
from .settings import parse_bytes
from .store import LIVE, Store


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def open_cache(s) -> ResourceCache:
    return ResourceCache(
        s.storage_root / "cache",
        max_bytes=parse_bytes(s.cache_size),
        max_resource_size=parse_bytes(s.max_resource_size),
        download_timeout=s.download_timeout,
    )


def in_use(s) -> set[str]:
    store = Store(s.bridge_db_url)
    return {k for rec in store.sessions(statuses=LIVE + ("stopping",)) for k in rec.cache_keys or []}


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="jupyterhub_service.cache_command", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="show", choices=("show", "clear"))
    parser.add_argument("--dataset", help="only this dataset's entries (clear)")
    args = parser.parse_args(argv)
    s = settings_module.load()
    cache = open_cache(s)
    keep = in_use(s)
    try:
        if args.command == "clear":
            freed = cache.clear(keep, dataset_id=args.dataset)
            print(f"freed {_human(freed)}; kept {len(keep)} entr{'y' if len(keep) == 1 else 'ies'} "
                  f"in use by live sessions", file=out)
            return 0
        entries = sorted(cache.entries(), key=lambda e: -e.get("last_used", 0))
        print(f"cache {cache.root}: {len(entries)} entries, {_human(cache.total_bytes())} "
              f"of {_human(cache.max_bytes)}", file=out)
        for e in entries:
            used = dt.datetime.fromtimestamp(e.get("last_used", 0) / 1e9, dt.timezone.utc)
            flag = "in use" if e["key"] in keep else ""
            print(f"  {_human(e.get('size', 0)):>10}  {used:%Y-%m-%d %H:%M}  "
                  f"dataset={e.get('dataset_id') or '-'}  {e['key']}  {flag}", file=out)
        return 0
    finally:
        cache.close()


if __name__ == "__main__":
    sys.exit(main())
