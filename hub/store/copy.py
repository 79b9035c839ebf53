"""Copy a county's SQLite store into an empty PostgreSQL store, verified
(``torwart-hub migrate-store``).

Both stores are opened (and so brought to the latest schema) first; then every table of
the SQLite store is copied in one PostgreSQL transaction (all or nothing, under the
store's write lock) from one SQLite snapshot, with ``COPY``. SQLite's ``rowid`` goes into
the PostgreSQL tables' ``rowid`` column where they have one (``postgres.schema``), ids keep
their values and the identity sequences are moved past them. The copy is verified per
table: the row count and a checksum of the contents (an order-independent sum of a hash
of each row's values), computed the same way from both databases.

Refused, with nothing written: a target that is not a PostgreSQL store, that holds any row,
or whose schema lacks a table or column of the source (a migration not ported).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .types import StoreError

# SQL text here is built from table and column names the two schemas list (quoted by _q);
# every value travels as a parameter or through COPY (hence the noqa: S608 below).

log = logging.getLogger(__name__)

#: SQLite's own tables and the migration bookkeeping, which each store keeps for itself.
SKIP = frozenset({"_sqlite_migrations", "schema_version", "store_migrations"})
BATCH = 10_000
_MASK = (1 << 64) - 1

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    checksum: str


@dataclass(frozen=True)
class CopyReport:
    tables: list[TableCopy]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def _row_hash(values: Iterable[Any]) -> int:
    """A row's hash over its values' types and values (bytes and memoryviews alike)."""
    h = hashlib.blake2b(digest_size=8)
    for value in values:
        v = bytes(value) if isinstance(value, memoryview) else value
        h.update(repr((type(v).__name__, v)).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big")


def _summary(rows: Iterator[Iterable[Any]]) -> tuple[int, str]:
    n, total = 0, 0
    for r in rows:
        n += 1
        total = (total + _row_hash(r)) & _MASK
    return n, f"{total:016x}"


def _sqlite_tables(src: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {t: [r[1] for r in src.execute(f'PRAGMA table_info("{t}")')] for t in names if t not in SKIP}


def _pg_tables(cur: Any) -> dict[str, list[str]]:
    cur.execute(b"SELECT table_name, column_name FROM information_schema.columns "
                b"WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position")
    out: dict[str, list[str]] = {}
    for r in cur.fetchall():
        t, c = r["table_name"], r["column_name"]
        if t not in SKIP:
            out.setdefault(t, []).append(c)
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_sqlite_to_postgres(source: Path, target_url: str, *, progress: Progress = lambda _: None) -> CopyReport:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL store at
    ``target_url`` and verify it; StoreError (nothing written) as the module says."""
    from .postgres.base import WRITE_LOCK, PgBase
    from .postgres.store import PostgresStore
    from .sqlite.store import SqliteStore

    started = time.monotonic()
    SqliteStore(source).close()  # the source at the latest schema, as the target will be
    dst = PostgresStore(target_url)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            return _copy(src, dst, WRITE_LOCK, progress, started)
        finally:
            src.close()
    finally:
        PgBase.close(dst)


def _copy(src: sqlite3.Connection, dst: Any, lock: int, progress: Progress, started: float) -> CopyReport:
    pg = dst._pg
    src.execute("BEGIN")  # one snapshot of the source
    s_tables = _sqlite_tables(src)
    cur = pg.cursor()
    pg.execute(b"BEGIN")
    try:
        pg.execute(b"SELECT pg_advisory_xact_lock(%s)", (lock,))
        p_tables = _pg_tables(cur)
        missing = sorted(set(s_tables) - set(p_tables))
        if missing:
            raise StoreError(f"the PostgreSQL store has no table {', '.join(missing)}: its schema lacks a migration "
                             "the SQLite store has (port it to hub/store/postgres/schema.py)")
        for t in sorted(p_tables):
            if pg.execute(f"SELECT 1 FROM {_q(t)} LIMIT 1".encode()).fetchone() is not None:  # noqa: S608
                raise StoreError(f"the PostgreSQL store is not empty (table {t} has rows): "
                                 "migrate-store copies into an empty database only")
        done: list[TableCopy] = []
        for t in _referenced_first(cur, list(s_tables)):
            cols = s_tables[t]
            lacking = [c for c in cols if c not in p_tables[t]]
            if lacking:
                raise StoreError(f"the PostgreSQL store's table {t} has no column {', '.join(lacking)}")
            done.append(_copy_table(src, cur, t, cols, rowid="rowid" in p_tables[t], progress=progress))
        _move_identities(cur)
        for tc in done:
            cols = s_tables[tc.table]
            cur.execute(f"SELECT {', '.join(map(_q, cols))} FROM {_q(tc.table)}".encode())  # noqa: S608
            n, checksum = _summary(_rows(cur))
            if (n, checksum) != (tc.rows, tc.checksum):
                raise StoreError(f"verification failed for table {tc.table}: SQLite {tc.rows} rows, checksum "
                                 f"{tc.checksum}; PostgreSQL {n} rows, checksum {checksum}")
            progress(f"{tc.table}: {tc.rows} rows verified")
        pg.execute(b"COMMIT")
    except BaseException:
        if not pg.broken:
            pg.execute(b"ROLLBACK")
        raise
    finally:
        src.execute("COMMIT")
    return CopyReport(tables=done, seconds=time.monotonic() - started)


def _rows(cur: Any) -> Iterator[list[Any]]:
    while batch := cur.fetchmany(BATCH):
        for r in batch:
            yield list(r.values())


def _copy_table(src: sqlite3.Connection, cur: Any, table: str, cols: list[str], *, rowid: bool,
                progress: Progress) -> TableCopy:
    """COPY one table; its count and checksum as read from SQLite."""
    total = src.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]  # noqa: S608
    names = (["rowid"] if rowid else []) + cols
    select = f"SELECT {', '.join((['rowid'] if rowid else []) + [_q(c) for c in cols])} FROM {_q(table)}"  # noqa: S608
    n, acc, last = 0, 0, time.monotonic()
    with cur.copy(f"COPY {_q(table)} ({', '.join(map(_q, names))}) FROM STDIN".encode()) as copy:
        for row in src.execute(select):
            copy.write_row(row)
            acc = (acc + _row_hash(row[1:] if rowid else row)) & _MASK
            n += 1
            if n % BATCH == 0 and time.monotonic() - last >= 2:
                progress(f"{table}: {n}/{total} rows")
                last = time.monotonic()
    progress(f"{table}: {n} rows copied")
    return TableCopy(table=table, rows=n, checksum=f"{acc:016x}")


def _referenced_first(cur: Any, tables: list[str]) -> list[str]:
    """``tables`` ordered so that a table comes after those its foreign keys name."""
    cur.execute(b"SELECT conrelid::regclass::text AS t, confrelid::regclass::text AS ref FROM pg_constraint "
                b"WHERE contype = 'f' AND connamespace = current_schema()::regnamespace")
    needs: dict[str, set[str]] = {}
    for r in cur.fetchall():
        needs.setdefault(r["t"], set()).add(r["ref"])
    out: list[str] = []
    while len(out) < len(tables):
        ready = [t for t in tables if t not in out and not (needs.get(t, set()) & set(tables)) - set(out) - {t}]
        if not ready:
            raise StoreError(f"foreign keys form a cycle among {', '.join(sorted(set(tables) - set(out)))}")
        out += ready
    return out


def _move_identities(cur: Any) -> None:
    """Move every identity sequence past the largest value copied into its column."""
    cur.execute(b"SELECT table_name, column_name FROM information_schema.columns "
                b"WHERE table_schema = current_schema() AND is_identity = 'YES'")
    for r in cur.fetchall():
        t, c = _q(r["table_name"]), _q(r["column_name"])
        sql = f"SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)"  # noqa: S608
        cur.execute(sql.encode(), (r["table_name"], r["column_name"]))
