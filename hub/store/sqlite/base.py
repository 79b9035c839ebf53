"""The SQLite side of the hub's store: the connection, its transactions, and a private file.

``SqliteBase`` opens the database in WAL mode with ``synchronous = FULL`` (an ack tells a
site its events are stored, and a cache version once published must never come back
with other contents after a power cut), waits up to 30 s for another connection's lock,
and brings the schema up to date (``schema.migrate``). Rows are ``sqlite3.Row``: every
read takes its columns by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from sqlite_utils import Database

from wire.private import loose_mode

from .schema import applied, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A write of at least this many rows gets a page cache of BULK_CACHE_KIB (``_bulk``).
BULK_ROWS = 10_000
BULK_CACHE_KIB = -64 * 1024  # negative: KiB, as PRAGMA cache_size takes it


def _keep_private(path: Path) -> None:
    """The store holds enrolled credentials and booking PINs: create it 0600 (SQLite would
    use the umask, typically 0644, and its WAL files follow the database's mode), and take
    group and other access away from a store an older version created so. The data
    directory may be open to the broker's group (torwart-hub.service: 0710).

    An existing store is never opened here: closing any descriptor of the database file
    drops every POSIX lock this process holds on it, so a second store opened beside a
    running one (another thread's) would let another process's last close take the
    running one's WAL away (SQLite then deletes the -wal and -shm files under it)."""
    try:
        if not path.exists():
            with contextlib.suppress(FileExistsError):  # created by another process just now
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p.exists() and (mode := loose_mode(p.stat().st_mode)) is not None:
                os.chmod(p, 0o600)
                log.warning("%s was readable by group or others (mode %04o); made it 0600", p, mode)
    except PermissionError as exc:
        log.warning("cannot make the hub store private: %s", exc)


class SqliteBase:
    """Connection and transaction helpers shared by the store's parts.

    A connection belongs to the thread that opened it (sqlite3 refuses use from another
    thread): each thread opens its own store on the same file."""

    def __init__(self, path: str | Path) -> None:
        self._open(path)

    def _open(self, path: str | Path) -> None:
        """Connect and migrate; the PostgreSQL store (``hub.store.postgres``) overrides this,
        ``_write``, ``_write_own_rows``, ``_read``, ``close`` and ``schema_version`` and shares every store
        operation of the mixins built on this class."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _keep_private(self.path)
        # isolation_level=None: the driver opens no implicit transactions, so every
        # transaction is the explicit BEGIN of _write()/_read().
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        self._conn = conn
        self.db = Database(conn, execute_plugins=False)
        try:
            self.db.enable_wal()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, self.db, self.path)
        except BaseException:
            conn.close()  # a store that cannot be opened holds no connection (nor its locks)
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write_own_rows(self) -> Iterator[sqlite3.Connection]:
        """A write transaction of single-statement compare-and-sets on rows no other
        operation reads in step with the rest of the store (a node's heartbeat, the
        leader's lease). Here ``_write``: SQLite has one write lock. The
        PostgreSQL store leaves out its store-wide write lock, so that a long write of
        another connection (a first sync of a million bookings) does not hold up the
        leader's lease."""
        with self._write() as c:
            yield c

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: take the write lock before reading,
        so read-modify-write is safe across processes); a savepoint when nested."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                raise
            conn.execute("RELEASE nested")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One write transaction around several store operations (a batch of sites' cache
        versions, say): each operation inside runs as a savepoint of it, so one that fails
        undoes only itself; nothing is durable until the block ends and the transaction
        commits, and an exception leaving the block (or a failing commit) undoes all of
        it. Within a batch this store holds the write lock (other writers wait)."""
        with self._write():
            yield

    def _tuples(self, sql: str, params: Sequence[Any], make: Callable[..., T]) -> list[T]:
        """The rows of ``sql`` as ``make(*columns)``, the columns in the SELECT's order: for
        a query of many small rows (a site's bookings for its cache), where reading each
        column by name costs more than the query. Within ``_read`` or ``_write``."""
        cur = self._conn.cursor()
        cur.row_factory = lambda _cur, row: make(*row)
        return cur.execute(sql, params).fetchall()

    @contextmanager
    def _bulk(self, rows: int) -> Iterator[None]:
        """Around a write of ``rows`` rows in the open transaction: with many, a larger page
        cache for its duration (a million bookings' index pages would otherwise be evicted
        and read back again and again), then the usual one again (SQLite frees the rest)."""
        if rows < BULK_ROWS:
            yield
            return
        before = self._conn.execute("PRAGMA cache_size").fetchone()[0]
        self._conn.execute(f"PRAGMA cache_size = {BULK_CACHE_KIB}")
        try:
            yield
        finally:
            self._conn.execute(f"PRAGMA cache_size = {int(before)}")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries see one snapshot."""
        conn = self._conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def schema_version(self) -> int:
        """How many of the schema's migrations are applied (all of ``schema.MIGRATIONS`` once open)."""
        with self._read():
            return len(applied(self.db))
