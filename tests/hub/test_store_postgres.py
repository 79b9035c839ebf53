"""What only the PostgreSQL store promises (the shared contract runs in
tests/hub/test_store_contract*.py on both stores): writers on several connections (several
hub nodes) lose and double nothing, nodes starting at once migrate once, a server restart
gives a clear error and the next operation connects again, committed data survives a crash
of the server, and the URL and password file are checked with clear errors; and the schema
mirrors SQLite's (migration names, tables, columns, types, keys, indexes)."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from hub.errors import HubError
from hub.store import CacheVersionConflict, EventBatch, IncomingEvent, NodeInfo, Store, StoreError, open_store
from hub.store.postgres import StoreUnavailable
from hub.store.postgres.base import translate
from hub.store.postgres.schema import MIGRATIONS
from hub.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.postgres import Postgres, fresh_store_url
from testkit.util import wait_for
from tests.hub.store_contract import SITES, events, postgres_url
from wire import messages as m
from wire.topics import Kind, topic

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fresh_url(postgres_server: Postgres) -> str:
    """An EMPTY database (no schema yet) on the session's server, password in the URL."""
    return postgres_server.url(postgres_server.fresh_db(prefix="empty"), password=True)


@pytest.fixture(name="store_url")
def pg_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with the store's schema (as the contract suite's)."""
    return postgres_url(request, tmp_path)


@pytest.fixture
def own_server() -> Iterator[Postgres]:
    """A server of this test's own, to stop and kill."""
    with Postgres() as pg:
        yield pg


def _in_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_the_schema_mirrors_the_sqlite_migrations_by_name() -> None:
    assert [name for name, _ in MIGRATIONS] == [fn.__name__ for fn in SQLITE_MIGRATIONS]


#: SQLite's declared column types and their PostgreSQL twins (postgres/schema.py's rules).
_TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision", "BLOB": "bytea", "FLOAT": "double precision"}


def test_the_schema_mirrors_the_sqlite_tables_columns_types_and_keys(tmp_path: Path, store_url: str) -> None:
    """Each SQLite table has its twin with the same columns (PostgreSQL adds ``rowid``
    where the shared SQL needs it), of the twin type, NOT NULL alike, the same primary key,
    and the same index names (sqlite-utils' ``idx_`` names and the named ones)."""
    import sqlite3

    from hub.store.copy import SKIP

    open_store(str(tmp_path / "hub.sqlite3")).close()
    lite = sqlite3.connect(tmp_path / "hub.sqlite3")
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%'") if r[0] not in SKIP]
    want: dict[str, dict[str, tuple[str, bool, bool]]] = {}
    for t in tables:
        want[t] = {}
        for _, name, decl, notnull, _, pk in lite.execute(f'PRAGMA table_info("{t}")'):
            # A primary key column is NOT NULL in PostgreSQL (SQLite's INTEGER one is the rowid).
            want[t][name] = (_TYPES[decl.upper()], bool(notnull) or pk > 0, pk > 0)
    lite_indexes = {r[0] for r in lite.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' "
                                               "AND name NOT LIKE 'sqlite_%'") if r[1] not in SKIP}
    lite.close()
    with psycopg.connect(store_url) as conn:
        have: dict[str, dict[str, tuple[str, bool, bool]]] = {}
        pks = {(t, c) for t, c in conn.execute(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name "
            "AND tc.table_schema = kcu.table_schema WHERE tc.constraint_type = 'PRIMARY KEY' "
            "AND tc.table_schema = current_schema()")}
        for t, c, typ, nullable in conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = current_schema()"):
            if t in SKIP or c == "rowid":
                continue
            have.setdefault(t, {})[c] = (typ, nullable == "NO", (t, c) in pks)
        pg_indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    assert have == want
    assert lite_indexes <= pg_indexes


def test_the_shared_sql_is_translated_without_touching_literals_or_quoted_names() -> None:
    assert translate("SELECT '?', \"end\" FROM t WHERE a = ? AND b LIKE '%x' AND c = :c") == \
        "SELECT '?', \"end\" FROM t WHERE a = %s AND b LIKE '%%x' AND c = %(c)s"
    assert translate("SELECT 'it''s ?' WHERE x = excluded.x") == "SELECT 'it''s ?' WHERE x = excluded.x"


def test_nodes_starting_at_once_on_an_empty_database_migrate_it_once(fresh_url: str) -> None:
    stores: list[Store] = []
    lock = threading.Lock()

    def open_one(_: int) -> None:
        s = open_store(fresh_url)
        with lock:
            stores.append(s)

    _in_threads(4, open_one)
    try:
        assert len(stores) == 4
        assert {s.schema_version() for s in stores} == {len(MIGRATIONS)}  # type: ignore[attr-defined]
        with psycopg.connect(fresh_url) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM store_migrations ORDER BY applied_at")]
        assert names == [name for name, _ in MIGRATIONS]
    finally:
        for s in stores:
            s.close()


def test_a_store_with_a_migration_this_hub_does_not_know_is_refused(fresh_url: str) -> None:
    open_store(fresh_url).close()
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("INSERT INTO store_migrations (name, applied_at) VALUES ('_from_the_future', 1e12)")
    with pytest.raises(StoreError, match="_from_the_future"):
        open_store(fresh_url)


def test_concurrent_writers_store_each_site_stream_seq_once(store_url: str) -> None:
    with open_store(store_url) as s:
        s.sync_sites(SITES)
    n, writers = 600, 4
    new_counts = [0] * writers

    def write(i: int) -> None:
        # Every writer sends every event (as redelivery to several nodes would), in its
        # own order and batches, on its own connection.
        seqs = list(range(1, n + 1))
        seqs = seqs[i * 37 % n:] + seqs[: i * 37 % n]
        with open_store(store_url) as s:
            for k in range(0, n, 25 + i):
                batch = EventBatch(events=[IncomingEvent("s1", *ev) for ev in events(seqs[k : k + 25 + i])])
                new_counts[i] += len(s.store_batch("minheim", batch).new)

    _in_threads(writers, write)
    assert sum(new_counts) == n  # each event reported new by exactly one writer
    with open_store(store_url) as s:
        stored = s.events(site_id="minheim", limit=10 * n)
        assert sorted(e.seq for e in stored) == list(range(1, n + 1))
        st = next(x for x in s.event_streams("minheim") if x.stream == "s1")
        assert (st.acked_upto, st.max_seq, st.gaps) == (n, n, ())


def test_two_nodes_building_the_same_cache_version_one_wins(store_url: str) -> None:
    results: list[str] = []

    def build(i: int) -> None:
        with open_store(store_url) as s:
            try:
                s.record_cache_version("minheim", version=1, base_version=0, built_at=1, added={f"e{i}": "{}"},
                                       changed={}, removed=[], n_entries=1, size=2)
                results.append("ok")
            except CacheVersionConflict:
                results.append("conflict")

    with open_store(store_url) as s:
        s.sync_sites(SITES)
    _in_threads(3, build)
    assert sorted(results) == ["conflict", "conflict", "ok"]
    with open_store(store_url) as s:
        snap = s.cache_snapshot("minheim")
        assert snap is not None and snap[0].version == 1 and len(snap[1]) == 1


def test_queued_rows_are_claimed_by_one_node_only(store_url: str) -> None:
    with open_store(store_url) as s:
        for i in range(60):
            assert s.queue_feedback(f"b{i}", "check_in", "minheim", 100, now=10.0)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(_: int) -> None:
        with open_store(store_url) as s:
            while items := s.claim_feedback(20.0, lease=300, limit=7):
                with lock:
                    claimed.extend(it.booking_id for it in items)

    _in_threads(4, claim)
    assert sorted(claimed) == sorted(f"b{i}" for i in range(60))


def test_a_server_restart_fails_the_operation_clearly_and_the_next_one_connects_again(own_server: Postgres) -> None:
    url = own_server.url(own_server.fresh_db(), password=True)
    with open_store(url) as s:
        s.sync_sites(SITES)
        assert s.store_events("minheim", events([1, 2])).new == 2
        own_server.stop()
        with pytest.raises(StoreUnavailable) as info:
            s.store_events("minheim", events([3]))
        assert isinstance(info.value, HubError)
        assert own_server.password not in str(info.value) and "***" in str(info.value)
        own_server.start()
        r = s.store_events("minheim", events([3]))  # the next operation connects again
        assert (r.new, r.acked_upto) == (1, 3)
        # A server restarted while the store was idle: the next operation does not fail.
        own_server.restart()
        assert s.store_events("minheim", events([4])).acked_upto == 4


def test_a_connection_lost_inside_a_batch_stores_nothing_of_it_even_where_the_caller_goes_on(store_url: str) -> None:
    # Hub.changed catches one site's failure inside a batch and goes on with the next site.
    # After the connection broke, the next operation must not connect again and commit on
    # its own: the batch is all or nothing, and its end reports the loss.
    failures: list[BaseException] = []
    with open_store(store_url) as s:
        s.sync_sites(SITES)
        with pytest.raises(StoreUnavailable) as at_end, s.batch():
            assert s.store_events("minheim", events([1, 2])).new == 2
            with psycopg.connect(store_url, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (s._pg.info.backend_pid,))  # type: ignore[attr-defined]
            for seq in (3, 4):  # each fails alone; the caller carries on
                try:
                    s.store_events("minheim", events([seq]))
                except Exception as exc:  # collected, asserted below
                    failures.append(exc)
        assert [type(e) for e in failures] == [StoreUnavailable, StoreUnavailable], failures
        assert all("batch" in str(e) for e in failures), failures
        assert "nothing of it is stored" in str(at_end.value)
        # Nothing of the batch is stored; the next operation connects again.
        assert s.events(site_id="minheim", limit=10) == []
        assert s.store_events("minheim", events([1])).acked_upto == 1


def test_the_lease_and_heartbeats_are_not_held_up_by_a_long_write_of_another_connection(store_url: str) -> None:
    # A first sync of a million bookings holds one write transaction for 10-20 s. The
    # leader's lease thread (its own connection) must renew meanwhile, or the leader loses
    # its lease to its own sync and stops its jobs.
    holding, release = threading.Event(), threading.Event()
    renewed: list[bool] = []

    def long_write() -> None:
        with open_store(store_url) as s, s.batch():
            s.store_events("minheim", events([1]))
            holding.set()
            release.wait(30)

    def renew() -> None:
        with open_store(store_url) as s:
            s.heartbeat_node(NodeInfo(id="n1", host="h", pid=1, version="v", started_at=1.0, role="leader",
                                      instance="i"), now=1000.0)
            renewed.append(s.try_lease("n1", now=1000.0, seconds=15).held_by("n1", 1000.0))

    with open_store(store_url) as s:
        s.sync_sites(SITES)
    writer = threading.Thread(target=long_write)
    writer.start()
    try:
        assert holding.wait(30)
        lease = threading.Thread(target=renew)
        lease.start()
        lease.join(10)
        assert not lease.is_alive() and renewed == [True], "the lease waited for the long write"
    finally:
        release.set()
        writer.join(30)
    with open_store(store_url) as s:
        assert len(s.events(site_id="minheim", limit=10)) == 1


def test_what_was_committed_survives_a_crash_of_the_server(own_server: Postgres) -> None:
    url = own_server.url(own_server.fresh_db(), password=True)
    with open_store(url) as s:
        s.sync_sites(SITES)
        assert s.store_events("minheim", events(list(range(1, 201)))).acked_upto == 200
    own_server.kill()  # immediate shutdown: no checkpoint, recovery from the WAL at start
    own_server.start()
    with open_store(url) as s:
        assert len(s.events(site_id="minheim", limit=1000)) == 200
        state = s.site_state("minheim")
        assert state is not None and state.acked_upto == 200


def test_an_unreachable_server_is_a_clear_error_without_the_password(postgres_server: Postgres) -> None:
    port = postgres_server.port
    url = f"postgresql://torwart:s3cret@127.0.0.1:{port + 1 if port < 65535 else port - 1}/nosuch"
    with pytest.raises(StoreUnavailable) as info:
        open_store(url)
    text = str(info.value)
    assert "cannot connect to the PostgreSQL store" in text and "s3cret" not in text and "***" in text


@pytest.mark.parametrize(("url", "why"), [
    ("postgresql://torwart@127.0.0.1:5432/", "names no database"),
    ("postgresql://torwart@127.0.0.1:5x/hub", "port must be a number"),
    ("postgresql://torwart@127.0.0.1/hub?nosuchparam=1", "invalid URI query parameter"),
    ("postgresql://torwart@127.0.0.1/hub?password_file=", "password_file is empty"),
])
def test_a_malformed_postgresql_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(StoreError, match=why):
        open_store(url)


def test_the_password_comes_from_an_owner_only_file(postgres_server: Postgres, tmp_path: Path) -> None:
    db = postgres_server.fresh_db()
    pw = tmp_path / "db-password"
    pw.write_text(postgres_server.password + "\n")
    pw.chmod(0o640)
    url = f"{postgres_server.url(db)}?password_file={pw}"
    with pytest.raises(StoreError, match="accessible by group or others") as info:
        open_store(url)
    assert not isinstance(info.value, StoreUnavailable)
    pw.chmod(0o600)
    with open_store(url) as s:
        assert s.sites() == []
    pw.write_text("wrong\n")
    with pytest.raises(StoreUnavailable, match="password authentication failed"):
        open_store(url)
    with pytest.raises(StoreError, match=r"does not exist|No such file"):
        open_store(f"{postgres_server.url(db)}?password_file={tmp_path / 'missing'}")


def test_libpq_means_give_the_password_too(postgres_server: Postgres, monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres_server.url(postgres_server.fresh_db())
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(StoreUnavailable):
        open_store(url)
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    with open_store(url) as s:
        assert s.members() == []


def test_text_sorts_bytewise_as_in_sqlite_whatever_the_databases_locale(postgres_server: Postgres) -> None:
    name = f"icu_{secrets.token_hex(4)}"
    postgres_server.admin(f'CREATE DATABASE "{name}" OWNER torwart TEMPLATE template0 LOCALE_PROVIDER icu '
                          "ICU_LOCALE %s", ("en-US",))
    url = postgres_server.url(name, password=True)
    with psycopg.connect(url) as conn:  # the database's own order puts lower case first
        assert conn.execute("SELECT 'B1' < 'a1'").fetchone() == (False,)
    with open_store(url) as s:
        for member in ("a1", "B1", "a-2"):
            s.add_member(member, member)
        assert [m.id for m in s.members()] == sorted(["a1", "B1", "a-2"])  # Python's order is bytewise too


def test_a_running_hub_rides_out_a_restart_of_postgresql_without_losing_events(
    own_server: Postgres, tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform,
    mqtt_client: type[TestClient], caplog: pytest.LogCaptureFixture,
) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), store=fresh_store_url(own_server))
    with HubThread(county) as hub:
        site = mqtt_client(broker)  # type: ignore[call-arg]
        site.subscribe(topic("minheim", Kind.EVENT_ACK))

        def acked(upto: int) -> bool:
            return any(m.decode(msg.payload, m.EventAck).upto >= upto for msg in site.drain())

        for seq in range(1, 51):
            site.publish(topic("minheim", Kind.EVENT), _event(seq))
        wait_for(lambda: acked(50), 20, what="ack up to 50")
        own_server.stop()
        for seq in range(51, 76):  # while the server is away: not stored, so not acked
            site.publish(topic("minheim", Kind.EVENT), _event(seq))

        def failed() -> bool:
            """The failure is logged as what it is (hub.outage): a warning naming the outage,
            not a traceback."""
            return any(r.levelno == logging.WARNING and "the store is unavailable" in r.getMessage()
                       for r in caplog.records)

        wait_for(failed, 20, what="the hub failing to store a batch while PostgreSQL is down")
        assert not acked(51)
        own_server.start()
        for seq in range(51, 101):  # the site resends what is not acked, then goes on
            site.publish(topic("minheim", Kind.EVENT), _event(seq))
        wait_for(lambda: acked(100), 30, what="ack up to 100 after the restart")
        assert hub.thread.is_alive()
    assert not [r for r in caplog.records if isinstance(r.exc_info[1] if r.exc_info else None, StoreUnavailable)]
    with open_store(county.store_url) as s:
        assert sorted(e.seq for e in s.events(site_id="minheim", limit=1000)) == list(range(1, 101))


def _event(seq: int) -> bytes:
    return m.encode(m.DoorOpened(id=f"ev-{seq}", site="minheim", seq=seq, boot="b", ts=1_800_000_000.0 + seq,
                                 clock_synced=True, door="eingang"))
