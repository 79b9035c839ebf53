"""Read-only access to the hub's store for the chaos run's checks, on SQLite (a file: the
default run) or on PostgreSQL (a ``postgresql://`` URL: the multi-node variant).

``ro(target)`` gives a connection with ``execute(sql, params)`` and ``close()`` either
way; the checks' SQL is written for SQLite (``?`` placeholders) and translated for
PostgreSQL as the hub's own PostgreSQL store does (hub.store.postgres.base.translate),
plus the one SQLite function the checks use (``json_extract(payload, '$.stream')``).
``DB_ERRORS`` are what a read may raise while the hub or the server restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from hub.store.postgres.base import translate
from hub.store.postgres.connect import connect_args

from .credscan import CredentialScanner

HubDb = Path | str
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
_SQLITE_ONLY = {"json_extract(payload, '$.stream')": "(payload::json ->> 'stream')"}


def value_bytes(v: object) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    return str(v).encode("utf-8", "replace")


def is_pg(target: HubDb) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class PgRo:
    """A read-only PostgreSQL session answering SQLite-style ``execute`` calls."""

    def __init__(self, url: str) -> None:
        conninfo, kwargs = connect_args(url)
        kwargs["application_name"] = "torwart-chaos-check"
        self._conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
        self._conn.read_only = True

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        for lite, pg in _SQLITE_ONLY.items():
            sql = sql.replace(lite, pg)
        return self._conn.execute(translate(sql).encode(), params)

    def close(self) -> None:
        self._conn.close()


def ro(target: HubDb) -> Any:
    """A read-only connection to ``target`` (a SQLite file, through its WAL, waiting for
    writers; or a PostgreSQL URL)."""
    if is_pg(target):
        return PgRo(str(target))
    path = Path(target)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)


def exists(target: HubDb) -> bool:
    return is_pg(target) or Path(target).exists()


def tables_and_columns(conn: Any, target: HubDb) -> dict[str, list[str]]:
    """Every table of the store with its columns."""
    if is_pg(target):
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position").fetchall()
        out: dict[str, list[str]] = {}
        for t, c in rows:
            out.setdefault(t, []).append(c)
        return out
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}


def store_bytes(target: HubDb) -> int:
    """The store's size on disk (the SQLite file with its WAL, or the database)."""
    if is_pg(target):
        conn = ro(target)
        try:
            return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        finally:
            conn.close()
    db = Path(target)
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def scan_store(scanner: CredentialScanner, target: HubDb, *, skip: Iterable[tuple[str, str | None]] = ()) -> int:
    """``CredentialScanner.scan_sqlite`` for the store at ``target`` (either kind): every row
    of every table, leaving out the (table, column) pairs of ``skip``; the findings."""
    if not is_pg(target):
        return scanner.scan_sqlite(Path(target), skip=skip)
    skipped = set(skip)
    total = 0
    conn = ro(target)
    try:
        for table, cols in tables_and_columns(conn, target).items():
            keep = [c for c in cols if (table, c) not in skipped]
            if (table, None) in skipped or not keep:
                continue
            sql = "SELECT " + ", ".join(f'"{c}"' for c in keep) + f' FROM "{table}"'  # noqa: S608 (the store's names)
            for row in conn.execute(sql):
                data = b"\x1f".join(value_bytes(v) for v in row)
                total += scanner.scan(f"postgresql:{table}", data, "database row")
    finally:
        conn.close()
    return total
