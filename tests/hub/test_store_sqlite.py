"""The SQLite store's own guarantees (what every store promises is in test_store_contract.py):
the file is private and in WAL mode, a store belongs to its thread, another process's open
and close leaves a running store's WAL alone; stores made by every earlier version of the hub
open and upgrade with their data intact (those from before sqlite-utils ``Migrations``
counted their schema in a ``schema_version`` table), a store from a newer hub is refused
untouched, and processes opening one store at once migrate it once."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from sqlite_utils import Database

from hub.store import StoreError, open_store, pseudonym
from hub.store.sqlite import SqliteStore
from hub.store.sqlite import schema as store_schema
from tests.hub._bookings import NOW
from tests.hub.store_contract import SITES, events

SECRET = bytes(range(32))
_MIGRATIONS_TABLE = "_sqlite_migrations"


def legacy_store(path: Path, version: int) -> None:
    """A hub store as the code before sqlite-utils ``Migrations`` left it at schema ``version``:
    what its ``SqliteBase._migrate`` did, the first ``version`` migrations applied in one
    ``BEGIN IMMEDIATE`` transaction and counted in the one-row table ``schema_version``."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn, execute_plugins=False)
    db.enable_wal()
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    for n in range(1, min(version, len(store_schema.MIGRATIONS)) + 1):
        store_schema.MIGRATIONS[n - 1](db)
        conn.execute("UPDATE schema_version SET version = ?", (n,))
    conn.execute("UPDATE schema_version SET version = ?", (version,))
    conn.execute("COMMIT")
    conn.close()


def _has(version: int, migration: store_schema.Migration) -> bool:
    """Whether a store at ``version`` has ``migration`` applied."""
    return store_schema.MIGRATIONS.index(migration) < version


def fill(path: Path, version: int) -> None:
    """Data as a hub at ``version`` wrote it (raw SQL: the tables as they were then)."""
    conn = sqlite3.connect(path, isolation_level=None)
    with conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('secret:who', ?)", (SECRET,))
        conn.execute("INSERT INTO sites (id, name, doors, active) VALUES ('minheim', 'Minheim', '[\"main\"]', 1)")
        conn.execute("INSERT INTO rooms (site_id, id, name, capacity, doors) "
                     "VALUES ('minheim', 'cowork', 'Cowork', 8, '[\"main\"]')")
        conn.execute("INSERT INTO room_resources (resource_id, site_id, room_id) VALUES ('res-a', 'minheim', 'cowork')")
        conn.execute("INSERT INTO members (id, who, display_name, email, created_at) VALUES ('m1', ?, 'Anna', NULL, ?)",
                     (pseudonym(SECRET, "m1"), NOW))
        conn.execute("INSERT INTO credentials (member_id, credential, type, label, created_at) "
                     "VALUES ('m1', 'pin:1234', 'pin', NULL, ?)", (NOW,))
        conn.execute("INSERT INTO bookings (id, resource_id, member_id, start, end, status, updated_at, pin, source) "
                     "VALUES ('b1', 'res-a', 'm1', ?, ?, 'confirmed', 1790000000, NULL, 'rest')", (NOW, NOW + 3600))
        conn.executemany("INSERT INTO events (site_id, seq, id, type, ts, received_at, payload) "
                         "VALUES ('minheim', ?, ?, 'door.opened', ?, ?, '{}')",
                         [(s, f"e{s}", NOW + s, NOW + s) for s in (1, 2, 4)])
        conn.execute("INSERT INTO site_state (site_id, acked_upto, max_seq, gaps, last_seen) "
                     "VALUES ('minheim', 2, 4, '[[3, 3]]', ?)", (NOW + 4,))
        if _has(version, store_schema._event_streams):  # the site's legacy stream, as that hub kept it
            conn.execute("INSERT INTO event_streams (site_id, stream, base, acked_upto, max_seq, gaps, last_seen) "
                         "VALUES ('minheim', '', 0, 2, 4, '[[3, 3]]', ?)", (NOW + 4,))
        if _has(version, store_schema._v2):
            conn.execute("INSERT INTO users (name, role, sites, password_hash, created_at) "
                         "VALUES ('admin', 'admin', NULL, 'scrypt$x', ?)", (NOW,))
        if _has(version, store_schema._v3):
            conn.execute("INSERT INTO enrollments (command_id, site_id, member_id, reader, created_at, expires_at, "
                         "status) VALUES ('cmd-1', 'minheim', 'm1', 'desk', ?, ?, 'pending')", (NOW, NOW + 60))
    conn.close()


def schema_of(path: Path) -> set[tuple[str, str, str | None]]:
    """The tables and indexes of a store file, without sqlite-utils' migrations table."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE ?",
                            (f"%{_MIGRATIONS_TABLE}%",)).fetchall()
    finally:
        conn.close()
    return set(rows)


def _open(path: Path) -> SqliteStore:
    store = open_store(path)
    assert isinstance(store, SqliteStore)
    return store


@pytest.mark.parametrize("version", range(len(store_schema.MIGRATIONS) + 1))
def test_a_store_from_before_sqlite_utils_migrations_upgrades_with_its_data(tmp_path: Path, version: int) -> None:
    old = tmp_path / "old.sqlite3"
    legacy_store(old, version)
    if version:
        fill(old, version)
    with _open(tmp_path / "fresh.sqlite3"):
        pass
    with _open(old) as store:
        assert store.schema_version() == len(store_schema.MIGRATIONS)
        assert store_schema.applied(store.db) == [fn.__name__ for fn in store_schema.MIGRATIONS]
    assert schema_of(old) == schema_of(tmp_path / "fresh.sqlite3")  # no schema_version table left either
    if not version:
        return
    with _open(old) as store:  # reopened: nothing left to apply, nothing recorded twice
        assert store_schema.applied(store.db) == [fn.__name__ for fn in store_schema.MIGRATIONS]
        assert store.hub_secret("who") == SECRET
        member = store.get_member("m1")
        assert member is not None and (member.display_name, member.who) == ("Anna", pseudonym(SECRET, "m1"))
        assert store.owner_of_credential("pin:1234") == "m1"
        booking = store.get_booking("b1")
        assert booking is not None and (booking.status, booking.updated_at) == ("confirmed", 1790000000)
        assert [b.room_id for b in store.bookings_for_site_window("minheim", NOW, NOW + 1)] == ["cowork"]
        assert [(e.stream, e.seq) for e in store.events(site_id="minheim")] == [("", 4), ("", 2), ("", 1)]
        (legacy,) = store.event_streams("minheim")
        assert (legacy.stream, legacy.acked_upto, legacy.max_seq, legacy.gaps) == ("", 2, 4, ((3, 3),))
        if _has(version, store_schema._v2):
            assert store.get_user("admin") is not None
        if _has(version, store_schema._v3):
            enrollment = store.get_enrollment("cmd-1")
            assert enrollment is not None and (enrollment.status, enrollment.seconds) == ("pending", None)
        # It works as a store of today: the gap closes, newer tables take rows.
        r = store.store_events("minheim", [(3, "e3", "door.opened", NOW + 3, "{}")])
        assert (r.new, r.acked_upto, r.gaps) == (1, 4, ())
        assert store.queue_feedback("b1", "check_in", "minheim", NOW, now=NOW)
        assert store.remember_webhook_signature("ab" * 32, ts=NOW, at=NOW, forget_before=0)
        store.add_user("caretaker", "caretaker", ["minheim"], "scrypt$y")


def test_a_legacy_store_from_a_newer_hub_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    newer = len(store_schema.MIGRATIONS) + 1
    legacy_store(path, newer)
    before = schema_of(path)
    with pytest.raises(StoreError, match=f"schema version {newer} is newer than this hub "
                                         f"\\({len(store_schema.MIGRATIONS)}\\)"):
        open_store(path)
    assert schema_of(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(newer,)]
    conn.close()


def test_a_store_with_a_migration_this_hub_does_not_know_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    with _open(path) as store:
        store.db[_MIGRATIONS_TABLE].insert(  # what a newer hub records
            {"migration_set": store_schema.MIGRATION_SET, "name": "_from_a_newer_hub", "applied_at": "x"})
    with pytest.raises(StoreError, match=r"newer than this hub .*_from_a_newer_hub"):
        open_store(path)


def test_stores_opened_at_once_migrate_a_legacy_store_once(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    half = len(store_schema.MIGRATIONS) // 2
    legacy_store(path, half)
    fill(path, half)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            start.wait(timeout=30)
            with open_store(path) as s:
                assert s.get_member("m1") is not None
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with _open(path) as store:
        assert store_schema.applied(store.db) == [fn.__name__ for fn in store_schema.MIGRATIONS]


# --- the file, its WAL, its thread ------------------------------------------------------------


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    s1 = open_store(path)
    s1.sync_sites(SITES)
    s1.add_member("m1", "Anna")
    s1.store_events("minheim", events([1, 2, 4]))
    secret = s1.hub_secret("who")
    s1.close()
    s2 = _open(path)
    assert s2.schema_version() == len(store_schema.MIGRATIONS)
    assert s2.hub_secret("who") == secret
    assert s2.get_member("m1") is not None
    r = s2.store_events("minheim", events([3]))
    assert (r.new, r.acked_upto) == (1, 4)
    assert s2.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s2.close()


def test_a_store_refuses_use_from_another_thread(tmp_path: Path) -> None:
    store = open_store(tmp_path / "hub.sqlite3")
    caught: list[BaseException] = []

    def use() -> None:
        try:
            store.sites()
        except sqlite3.ProgrammingError as exc:
            caught.append(exc)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert len(caught) == 1
    store.close()


def test_the_store_file_is_private_and_an_older_open_one_is_made_private(tmp_path: Path) -> None:
    # It holds enrolled credentials and booking PINs; the data directory may be open to
    # the broker's group (torwart-hub.service: StateDirectoryMode=0710).
    fresh = tmp_path / "fresh.sqlite3"
    with open_store(fresh) as store:
        store.add_member("m1", "Anna", "anna@example.org")
    for p in (fresh, fresh.with_name(fresh.name + "-wal")):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    old = tmp_path / "old.sqlite3"
    sqlite3.connect(old).execute("CREATE TABLE x (y)")
    old.chmod(0o644)  # what an older hub left (the umask's mode)
    with open_store(old):
        pass
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_a_second_store_in_one_process_leaves_the_first_ones_writes_visible_to_other_processes(
    tmp_path: Path,
) -> None:
    """The hub opens one store per thread; another process (``torwart-hub sites``) opening
    and closing the file meanwhile must not take the running store's WAL away."""
    import subprocess
    import sys

    path = tmp_path / "hub.sqlite3"
    a = open_store(path)
    b = open_store(path)  # a second thread's store, in the same process
    try:
        a.add_member("m1", "Anna")
        cli = "from hub.store import open_store; import sys; s = open_store(sys.argv[1]); s.members(); s.close()"
        subprocess.run([sys.executable, "-c", cli, str(path)], check=True, timeout=60)
        a.add_member("m2", "Ben")
        assert path.with_name(path.name + "-wal").exists()
        look = "from hub.store import open_store; import sys; print(open_store(sys.argv[1]).get_member('m2'))"
        out = subprocess.run([sys.executable, "-c", look, str(path)], check=True, timeout=60, capture_output=True,
                             text=True).stdout
        assert out.startswith("Member(id='m2'")
    finally:
        b.close()
        a.close()
    with open_store(path) as c:
        assert {m.id for m in c.members()} == {"m1", "m2"}
