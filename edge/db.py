"""Opening the edge's SQLite databases (the cache, the outbox) one way: WAL-mode
connections in autocommit mode (transactions are explicit BEGINs), the schema brought up
to date by sqlite-utils migrations under the write lock, and a rollback after a failure
that never hides the original error. Failures to open or prepare raise StorageError.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database, Migrations

from .errors import StorageError

log = logging.getLogger(__name__)

#: How long a connection waits for another one's lock (e.g. a reader's checkpoint).
BUSY_TIMEOUT_S = 5.0
#: After a big apply the WAL is truncated back to this size at the next checkpoint, so an
#: SD card does not keep a WAL as large as the biggest cache ever applied.
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024


def _enable_wal(conn: sqlite3.Connection) -> str:
    # Switching a new file to WAL needs an exclusive lock and SQLite does not call the busy
    # handler for it, so two connections opening a new file at once retry here.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect(path: Path, *, read_only: bool = False, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open a WAL-mode connection in autocommit mode (transactions are explicit BEGINs).

    Raises StorageError when the file cannot be opened.
    """
    try:
        if read_only:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
            mode = _enable_wal(conn)
            if mode != "wal":
                raise StorageError(f"{path}: could not switch to WAL journal mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    return conn


def rollback_quietly(conn: sqlite3.Connection, what: str) -> None:
    """Roll back an open transaction; SQLite may already have done so after SQLITE_FULL."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # pragma: no cover - the original error is what matters
            log.error("rollback after failed %s failed too: %s", what, exc)


def migrate(conn: sqlite3.Connection, migrations: Migrations, path: Path) -> None:
    """Bring the schema up to date. Under the write lock, so that two connections opening a
    new file at once (the agent's main loop and its cache worker) do not both create it."""
    try:
        db = Database(conn, execute_plugins=False)
        if not migrations.pending(db):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(db)  # re-checks what is pending, now under the lock
            conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(conn, "migration")
            raise
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"cannot prepare the database {path}: {exc}") from exc
