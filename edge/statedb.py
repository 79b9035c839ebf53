"""The agent's own small durable state: command ids already executed or refused in
lockdown (replay refusal), the lockdown flag (a lockdown survives a restart), who is
checked in where, and each reader's remaining denial budget (edge/limiter.py).

One connection, used from the agent's main thread only (ARCHITECTURE.md). Opened like the
cache and the outbox (``cache.connect``: WAL, ``synchronous=FULL``, a busy timeout), its
schema kept by sqlite-utils ``Migrations``; rows are read by column name.

A state.db from before ``Migrations`` holds the tables of ``m001_initial`` already (it was
made by the same ``CREATE TABLE IF NOT EXISTS`` statements), so that migration leaves it as
it is and is recorded as applied.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from .db import connect, migrate
from .errors import StorageError

_migrations = Migrations("torwart-edge-state")


@_migrations()
def m001_initial(db: Database) -> None:
    """The tables as the agent made them before ``Migrations`` (the same statements)."""
    db.execute("CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, executed_at REAL NOT NULL, "
               "expires_at INTEGER NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS denial_budget (reader TEXT PRIMARY KEY, tokens REAL NOT NULL)")
    db.execute("""CREATE TABLE IF NOT EXISTS presence (
    room TEXT NOT NULL, who TEXT NOT NULL, ref TEXT, until INTEGER, since REAL NOT NULL,
    PRIMARY KEY (room, who)
)""")


class StateDB:
    """The agent's state database at ``path`` (created and migrated on open); StorageError
    when it cannot be opened or written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._db.row_factory = sqlite3.Row
        migrate(self._db, _migrations, path)

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write: {exc}") from exc

    # --- commands ---------------------------------------------------------------------------

    def command_seen(self, command_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM commands WHERE id = ?", (command_id,)).fetchone() is not None

    def record_command(self, command_id: str, executed_at: float, expires_at: int) -> None:
        self._write("INSERT OR IGNORE INTO commands (id, executed_at, expires_at) VALUES (?, ?, ?)",
                    (command_id, executed_at, expires_at))

    def purge_commands(self, newest_signed_at: int) -> int:
        """Forget executed ids whose command ``newest_signed_at`` (the newest hub-signed time
        the site has durably stored) has reached: such a command is refused as ``expired``
        forever, whatever the clock says, because that signed time never goes back. The wall
        clock is never asked: stepped forward, it would forget ids of commands that a clock
        stepped back would then take as fresh."""
        with self._db:
            return self._db.execute("DELETE FROM commands WHERE expires_at <= ?", (int(newest_signed_at),)).rowcount

    # --- flags ----------------------------------------------------------------------------------

    def flag(self, name: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_flag(self, name: str, value: Any) -> None:
        self._write("INSERT INTO flags (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, json.dumps(value)))

    # --- denial budget ----------------------------------------------------------------------

    def denial_budgets(self) -> dict[str, float]:
        """Reader id → remaining denial tokens, for the readers that are below their burst."""
        return {r["reader"]: r["tokens"] for r in self._db.execute("SELECT reader, tokens FROM denial_budget")}

    def set_denial_budget(self, reader: str, tokens: float | None) -> None:
        """Store ``reader``'s remaining tokens; None deletes the row (a full budget)."""
        if tokens is None:
            self._write("DELETE FROM denial_budget WHERE reader = ?", (reader,))
        else:
            self._write("INSERT INTO denial_budget (reader, tokens) VALUES (?, ?) "
                        "ON CONFLICT(reader) DO UPDATE SET tokens = excluded.tokens", (reader, tokens))

    # --- presence ---------------------------------------------------------------------------

    def presence(self) -> list[tuple[str, str, str | None, int | None, float]]:
        """(room, who, ref, until, since) of everyone checked in, oldest first."""
        rows = self._db.execute("SELECT room, who, ref, until, since FROM presence ORDER BY since")
        return [(r["room"], r["who"], r["ref"], r["until"], r["since"]) for r in rows]

    def check_in(self, room: str, who: str, ref: str | None, until: int | None, since: float) -> None:
        self._write("INSERT INTO presence (room, who, ref, until, since) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(room, who) DO UPDATE SET ref = excluded.ref, until = excluded.until",
                    (room, who, ref, until, since))

    def check_out(self, room: str, who: str) -> None:
        self._write("DELETE FROM presence WHERE room = ? AND who = ?", (room, who))

    def close(self) -> None:
        self._db.close()
