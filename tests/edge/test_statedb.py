"""The agent's state database: a state.db made before sqlite-utils ``Migrations`` opens with
its contents as they were, a new one gets the same tables, and a file that cannot be opened
is a StorageError."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.errors import StorageError
from edge.statedb import StateDB

#: What the agent ran on every open before ``Migrations`` (edge/statedb.py's SCHEMA then).
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, executed_at REAL NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS denial_budget (reader TEXT PRIMARY KEY, tokens REAL NOT NULL);
CREATE TABLE IF NOT EXISTS presence (
    room TEXT NOT NULL, who TEXT NOT NULL, ref TEXT, until INTEGER, since REAL NOT NULL,
    PRIMARY KEY (room, who)
);
"""


def schema_of(path: Path) -> set[tuple[str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return set(conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '%sqlite_migrations%'"))
    finally:
        conn.close()


def test_a_state_db_from_before_migrations_keeps_its_contents(tmp_path: Path) -> None:
    old = tmp_path / "old" / "state.db"
    old.parent.mkdir()
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OLD_SCHEMA)
    conn.execute("INSERT INTO commands (id, executed_at, expires_at) VALUES ('cmd-1', 1.5, 100)")
    conn.execute("INSERT INTO flags (name, value) VALUES ('lockdown', 'true')")
    conn.execute("INSERT INTO denial_budget (reader, tokens) VALUES ('front', 2.5)")
    conn.execute("INSERT INTO presence (room, who, ref, until, since) VALUES ('hall', 'm-1', 'b1', 200, 10.0)")
    conn.close()
    for _ in range(2):  # the upgrade, then an ordinary restart
        state = StateDB(old)
        try:
            assert state.command_seen("cmd-1") and not state.command_seen("cmd-2")
            assert state.flag("lockdown") is True
            assert state.denial_budgets() == {"front": 2.5}
            assert state.presence() == [("hall", "m-1", "b1", 200, 10.0)]
        finally:
            state.close()
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall() == [
        ("torwart-edge-state", "m001_initial")]
    conn.close()
    fresh = tmp_path / "fresh" / "state.db"
    StateDB(fresh).close()
    assert schema_of(old) == schema_of(fresh)


def test_a_new_state_db_works_and_reads_back_by_name(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    try:
        state.record_command("cmd-1", 1.0, 50)
        state.set_flag("lockdown", {"since": 3})
        state.set_denial_budget("front", 1.25)
        state.check_in("hall", "m-1", None, None, 5.0)
        assert state.command_seen("cmd-1")
        assert state.flag("lockdown") == {"since": 3} and state.flag("nope", 7) == 7
        assert state.denial_budgets() == {"front": 1.25}
        assert state.presence() == [("hall", "m-1", None, None, 5.0)]
        assert state.purge_commands(50) == 1 and not state.command_seen("cmd-1")
    finally:
        state.close()


def test_a_state_db_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()  # a directory where the file should be
    with pytest.raises(StorageError, match=r"state\.db"):
        StateDB(tmp_path / "state.db")
