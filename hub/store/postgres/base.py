"""The PostgreSQL side of the hub's store: the connection, its transactions, and the
translation of the shared SQL.

Every store operation is the SQLite store's code (``hub.store.sqlite``: portable SQL with
``?`` placeholders, or ``:name`` ones with a dict, rows read by name); ``PgConn`` runs that
SQL on psycopg 3 (``?`` → ``%s``, ``:name`` → ``%(name)s``, rows as dicts, Python booleans
as 0/1 because the schema keeps SQLite's INTEGER flags).

Transactions keep SQLite's promises across hub nodes:

- a write transaction (``_write``) takes one transaction-scoped advisory lock
  (``WRITE_LOCK``) right after ``BEGIN``, as SQLite's ``BEGIN IMMEDIATE`` takes the file's
  write lock: writers from every node run one at a time, so each operation's
  read-modify-write (event stream gaps, cache versions, claims of queued rows) sees every
  write committed before it, with no lost update and no serialization failure to retry.
  Readers are never blocked. The exception: a node's heartbeat and the leader's lease
  (``_write_own_rows``), single-statement compare-and-sets that row locks order, so that a
  long write of any node never holds up the lease;
- a read transaction (``_read``) is ``REPEATABLE READ``: its queries see one snapshot.

The connection is opened with ``autocommit`` so that every transaction is the explicit
``BEGIN`` here. When the server goes away (restart, failover, a cut connection) the
operation under way raises ``StoreUnavailable`` (its transaction is rolled back by the
server, nothing of it is stored); the next operation connects again by itself, unless it
runs inside the broken transaction (a ``batch``): then it raises ``StoreUnavailable`` too,
and so does the batch's end, so that nothing of a batch is committed piecemeal.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.rows import args_row, dict_row

from ..sqlite.base import SqliteBase
from ..types import StoreError
from ..url import shown
from .connect import connect_args
from .schema import applied, migrate

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The advisory lock every write transaction holds (any constant; "torwart" in ASCII).
WRITE_LOCK = 0x746F7277617274

_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\?|(?<![:\w]):([A-Za-z_]\w*)|%""")
_translated: dict[str, str] = {}


class StoreUnavailable(StoreError):
    """The PostgreSQL server cannot be reached or the connection broke; what the operation
    under way would have written is not stored. The next operation connects again."""


def translate(sql: str) -> str:
    """The shared SQL in psycopg's placeholders (string literals and quoted names are kept)."""
    out = _translated.get(sql)
    if out is None:
        def repl(m: re.Match[str]) -> str:
            tok = m.group(0)
            if tok == "?":
                return "%s"
            if tok == "%":
                return "%%"
            if m.group(1) is not None:
                return f"%({m.group(1)})s"
            return tok.replace("%", "%%")  # a literal or quoted name: psycopg reads % everywhere

        out = _translated[sql] = _TOKEN.sub(repl, sql)
    return out


class _BoolAsInt(Dumper):
    """Python booleans as INTEGER 0/1, as SQLite stores them (the shared schema's flags)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class PgConn:
    """The part of ``sqlite3.Connection`` the shared SQL uses, over a psycopg connection."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.pg = conn

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> psycopg.Cursor[dict[str, Any]]:
        return self.pg.execute(translate(sql).encode(), params)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]) -> psycopg.Cursor[dict[str, Any]]:
        cur = self.pg.cursor()
        cur.executemany(translate(sql).encode(), list(seq))
        return cur

    @property
    def in_transaction(self) -> bool:
        # UNKNOWN (a closed or broken connection) is no transaction: the next BEGIN reconnects.
        return self.pg.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR,
                                                   pq.TransactionStatus.ACTIVE)


def _connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    conninfo, kwargs = connect_args(url)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row, **kwargs)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot connect to the PostgreSQL store {shown(url)}: "
                               f"{str(exc).strip()}") from None
    conn.adapters.register_dumper(bool, _BoolAsInt)
    return conn


class PgBase(SqliteBase):
    """Connection and transactions of the PostgreSQL store (overrides ``SqliteBase``'s)."""

    def _open(self, path: str | Path) -> None:
        self.url = str(path)
        self.path = Path(shown(self.url))  # for messages only: there is no file
        self._pg = _connect(self.url)
        self._conn = cast(sqlite3.Connection, PgConn(self._pg))
        self._write_locked = False  # this transaction holds WRITE_LOCK
        self._outer: PgConn | None = None  # the connection of the open outermost transaction
        try:
            migrate(self._pg, shown(self.url))
        except BaseException:
            self._pg.close()
            raise

    def close(self) -> None:
        self._pg.close()

    def __enter__(self) -> Self:
        return self

    def _begin(self, sql: bytes) -> PgConn:
        """Start the outermost transaction, connecting again first if the connection is gone
        (a restarted server); StoreUnavailable when that fails."""
        for attempt in (1, 2):
            if self._pg.closed or self._pg.broken:
                self._pg.close()  # a broken one holds its socket until closed
                self._pg = _connect(self.url)
                self._conn = cast(sqlite3.Connection, PgConn(self._pg))
                log.info("store %s: connected again", shown(self.url))
            try:
                self._pg.execute(sql)
                return cast(PgConn, self._conn)
            except psycopg.OperationalError as exc:
                if attempt == 2 or not (self._pg.closed or self._pg.broken):
                    raise StoreUnavailable(f"store {shown(self.url)}: {str(exc).strip()}") from None
                self._pg.close()
        raise AssertionError("unreachable")

    def _broke(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"store {shown(self.url)}: the connection broke, {what}")

    def _inside(self) -> bool:
        """Whether an outer transaction of this store is open; StoreUnavailable when its
        connection broke meanwhile. An operation then must not connect again and commit on
        its own: the outer transaction (a batch) is all or nothing."""
        if self._outer is None:
            return False
        if self._outer.pg.broken or self._outer.pg.closed:
            raise self._broke("within a transaction (a batch): nothing of it is stored")
        return True

    @contextmanager
    def _nested(self) -> Iterator[PgConn]:
        """Around work inside the open outer transaction: the connection breaking under it
        is StoreUnavailable (the whole outer transaction is lost), not psycopg's error."""
        conn = cast(PgConn, self._conn)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if not conn.pg.broken:
                raise
            raise self._broke(f"within a transaction (a batch): nothing of it is stored: "
                              f"{str(exc).strip()}") from None

    @contextmanager
    def _tx(self, begin: bytes, lock: bool) -> Iterator[sqlite3.Connection]:
        if self._inside():
            with self._nested() as conn:
                if lock and not self._write_locked:  # a write inside a read transaction
                    conn.pg.execute(b"SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    self._write_locked = True
                conn.pg.execute(b"SAVEPOINT nested")
                try:
                    yield self._conn
                except BaseException:
                    if not conn.pg.broken:
                        conn.pg.execute(b"ROLLBACK TO SAVEPOINT nested")
                        conn.pg.execute(b"RELEASE SAVEPOINT nested")
                    raise
                conn.pg.execute(b"RELEASE SAVEPOINT nested")
            return
        conn = self._begin(begin)
        self._outer = conn
        committing = False
        try:
            if lock:
                conn.pg.execute(b"SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                self._write_locked = True
            yield self._conn
            if conn.pg.broken:  # an operation inside failed on it, and the caller went on
                raise self._broke("within the transaction: nothing of it is stored")
            committing = True
            conn.pg.execute(b"COMMIT")
        except psycopg.OperationalError as exc:
            conn.pg.close()
            what = ("it broke while committing: the operation may or may not be stored" if committing
                    else "nothing of the operation under way is stored")
            raise self._broke(f"{what}: {str(exc).strip()}") from None
        except BaseException:
            if not conn.pg.broken and conn.in_transaction:
                conn.pg.execute(b"ROLLBACK")
            raise
        finally:
            self._write_locked = False
            self._outer = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding ``WRITE_LOCK`` (one writer at a time across nodes);
        a savepoint when nested."""
        with self._tx(b"BEGIN", True) as c:
            yield c

    @contextmanager
    def _write_own_rows(self) -> Iterator[sqlite3.Connection]:
        """A write transaction without ``WRITE_LOCK`` (``SqliteBase._write_own_rows``): row
        locks order the single-row compare-and-set of the lease among nodes."""
        with self._tx(b"BEGIN", False) as c:
            yield c

    def _tuples(self, sql: str, params: Sequence[Any], make: Callable[..., T]) -> list[T]:
        """``SqliteBase._tuples`` on this connection (psycopg's ``args_row``)."""
        with self._pg.cursor(row_factory=args_row(make)) as cur:
            return cur.execute(translate(sql).encode(), params).fetchall()

    @contextmanager
    def _bulk(self, rows: int) -> Iterator[None]:
        """Nothing to tune per write here (SQLite's page cache: ``SqliteBase._bulk``)."""
        yield

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries see one snapshot."""
        if self._inside():
            with self._nested():
                yield self._conn
            return
        with self._tx(b"BEGIN ISOLATION LEVEL REPEATABLE READ", False) as c:
            yield c

    def schema_version(self) -> int:
        """How many of the schema's migrations are applied (all of ``schema.MIGRATIONS`` once open)."""
        with self._read():
            return len(applied(self._pg))
