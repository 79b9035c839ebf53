"""``torwart-hub migrate-store``: move the county's SQLite store into PostgreSQL.

    torwart-hub migrate-store --to postgresql://USER@HOST:PORT/DBNAME [--password-file F] --config hub.toml

The hub must be stopped: the command takes the hub's run lock (``hub.runlock``) and
refuses while any hub process on this data directory holds it. The target database must
exist and be empty (the command creates the tables). The copy is one transaction, verified
table by table (rows and a content checksum: ``hub.store.copy``); the SQLite file is left as
it was. Afterwards it says what to change in hub.toml.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import HubError
from ..store.types import StoreError
from ..store.url import scheme_of, shown, sqlite_path, with_password_file
from .common import load

Add = Callable[..., argparse.ArgumentParser]


def cmd_migrate_store(args: argparse.Namespace) -> int:
    cfg = load(args, check_files=True)
    try:
        if scheme_of(args.to) != "postgresql":
            raise HubError(f"--to must be a postgresql:// URL, not {shown(args.to)!r}")
        source = sqlite_path(cfg.hub.store_url)
    except StoreError as exc:
        if "not a SQLite store" in str(exc):
            raise HubError(f"the hub's store is {shown(cfg.hub.store_url)!r}, not SQLite: nothing to migrate") from None
        raise HubError(str(exc)) from None
    if not source.exists():
        raise HubError(f"there is no SQLite store at {source} (nothing to migrate)")
    target = with_password_file(args.to, args.password_file)
    from .. import runlock
    from ..store.copy import copy_sqlite_to_postgres

    with runlock.exclusive(cfg.hub.data_path):
        print(f"copying {source} into {shown(args.to)}", flush=True)
        report = copy_sqlite_to_postgres(source, target, progress=lambda line: print(f"  {line}", flush=True))
    print(f"done: {len(report.tables)} tables, {report.rows} rows copied and verified in {report.seconds:.1f} s; "
          f"{source} is unchanged")
    print(f"now in {args.config}, section [hub]:")
    print(f'  database = "{args.to}"')
    if args.password_file:
        print(f'  database_password_file = "{args.password_file}"')
    if cfg.hub.store is not None:
        print("  and remove the line  store = ...")
    print("then start the hub (systemctl start torwart-hub)")
    return 0


def add_migrate_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    p = add(sub, "migrate-store", cmd_migrate_store, "copy the hub's SQLite store into an empty PostgreSQL "
            "database, verified (stop the hub first)")
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST:PORT/DBNAME of an empty database")
    p.add_argument("--password-file", metavar="FILE",
                   help="the database password, in a file readable by its owner only "
                        "(default: libpq's means: PGPASSWORD, ~/.pgpass)")
