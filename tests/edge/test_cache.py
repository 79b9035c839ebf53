"""The applied cache: PROTOCOL.md §3 refusals, full/delta semantics, the indexed lookup,
crash atomicity under real SIGKILLs, and a full disk."""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.cache import LOOKUP_SQL, CacheMeta, CacheStore
from edge.errors import StorageError
from tests.edge._faults import Child, fill
from tests.strategies import struct
from wire.errors import WireError
from wire.messages import CacheDelta, CacheFull, CacheFullStream, Entry, SignedBodyStream, decode, encode

SITE = "minheim"


def entry(n: int, *, prefix: str = "e", ref: str | None = "bk", doors: list[str] | None = None,
          from_: int | None = 1_700_000_000, until: int | None = 1_700_003_600) -> Entry:
    return Entry(id=f"{prefix}{n}", cred=f"{prefix.encode().hex()[:8]:0>8}{n:024x}",
                 doors=doors if doors is not None else ["front", "room-1"],
                 from_=from_, until=until, who=f"m{n}", ref=None if ref is None else f"{ref}{n}", room="room-1")


def full(version: int, entries: list[Entry], *, issued_at: int = 1_700_000_000,
         expires_at: int = 1_700_086_400) -> CacheFull:
    return CacheFull(site=SITE, version=version, issued_at=issued_at, expires_at=expires_at, entries=entries)


def delta(version: int, base: int, upsert: Sequence[Entry] = (), remove: Sequence[str] = (), *,
          issued_at: int = 1_700_000_100, expires_at: int = 1_700_086_500) -> CacheDelta:
    return CacheDelta(site=SITE, version=version, base_version=base, issued_at=issued_at, expires_at=expires_at,
                      upsert=list(upsert), remove=list(remove))


def snapshot(store: CacheStore) -> tuple[CacheMeta, list[Entry]]:
    return store.meta(), list(store.entries())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CacheStore]:
    with CacheStore(tmp_path / "cache.db") as s:
        yield s


# --- basics ----------------------------------------------------------------------------


def test_a_fresh_store_has_no_cache(store: CacheStore) -> None:
    assert store.version is None
    assert store.expires_at is None
    assert store.issued_at is None
    assert store.count() == 0
    assert store.newest_issued_at == 0
    assert store.lookup(entry(1).cred) == []


def test_full_apply_stores_every_entry_exactly(store: CacheStore) -> None:
    entries = [entry(1), entry(2, ref=None, from_=None, until=None), entry(3, doors=[])]
    assert store.apply(full(7, entries), now=1_700_000_005.5) == 3
    assert store.version == 7
    assert store.issued_at == 1_700_000_000
    assert store.expires_at == 1_700_086_400
    assert store.applied_at == 1_700_000_005.5
    assert store.count() == 3
    assert list(store.entries()) == entries
    for e in entries:
        assert store.lookup(e.cred) == [e]


def test_lookup_returns_every_entry_of_a_credential_in_id_order(store: CacheStore) -> None:
    a, b = entry(1), entry(2)
    same = [msgspec.structs.replace(b, cred=a.cred), a]
    store.apply(full(1, same))
    assert [e.id for e in store.lookup(a.cred)] == ["e1", "e2"]


def test_full_apply_replaces_everything(store: CacheStore) -> None:
    store.apply(full(1, [entry(i) for i in range(10)]))
    assert store.apply(full(2, [entry(100)])) == 1
    assert [e.id for e in store.entries()] == ["e100"]
    assert store.lookup(entry(1).cred) == []


def test_the_cache_survives_reopening(tmp_path: Path) -> None:
    with CacheStore(tmp_path / "c.db") as s:
        s.apply(full(3, [entry(1)]))
    with CacheStore(tmp_path / "c.db") as s:
        assert s.version == 3
        assert s.lookup(entry(1).cred) == [entry(1)]


# --- refusals leave everything unchanged ------------------------------------------------


@pytest.mark.parametrize("version", [5, 4, 0])
def test_full_with_a_version_not_after_the_applied_one_is_stale(store: CacheStore, version: int) -> None:
    store.apply(full(5, [entry(1), entry(2)]))
    before = snapshot(store)
    with pytest.raises(WireError) as exc:
        store.apply(full(version, [entry(9)]))
    assert exc.value.code == "stale_version"
    assert snapshot(store) == before


@pytest.mark.parametrize(("version", "base"), [(5, 4), (4, 3), (3, 1)])
def test_delta_with_a_version_not_after_the_applied_one_is_stale(store: CacheStore, version: int, base: int) -> None:
    store.apply(full(5, [entry(1)]))
    before = snapshot(store)
    with pytest.raises(WireError) as exc:
        store.apply(delta(version, base, [entry(9)], ["e1"]))
    assert exc.value.code == "stale_version"
    assert snapshot(store) == before


@pytest.mark.parametrize(("version", "base"), [(7, 6), (9, 4), (6, 0)])
def test_delta_on_another_base_is_a_base_mismatch(store: CacheStore, version: int, base: int) -> None:
    store.apply(full(5, [entry(1)]))
    before = snapshot(store)
    with pytest.raises(WireError) as exc:
        store.apply(delta(version, base, [entry(9)], ["e1"]))
    assert exc.value.code == "base_mismatch"
    assert snapshot(store) == before


def test_delta_before_any_full_cache_is_a_base_mismatch(store: CacheStore) -> None:
    before = snapshot(store)
    with pytest.raises(WireError) as exc:
        store.apply(delta(1, 0, [entry(1)]))
    assert exc.value.code == "base_mismatch"
    assert snapshot(store) == before


# --- deltas -------------------------------------------------------------------------------


def test_delta_upserts_by_id_and_removes_ids(store: CacheStore) -> None:
    store.apply(full(1, [entry(1), entry(2), entry(3)]))
    changed = msgspec.structs.replace(entry(2), doors=["front"], until=1_700_009_999)
    n = store.apply(delta(2, 1, [changed, entry(4)], ["e3", "no-such-id"]))
    assert n == 3
    assert list(store.entries()) == [entry(1), changed, entry(4)]
    assert store.lookup(entry(3).cred) == []
    assert store.lookup(changed.cred) == [changed]
    assert (store.version, store.issued_at, store.expires_at) == (2, 1_700_000_100, 1_700_086_500)


def test_delta_that_upserts_and_removes_the_same_id_removes_it(store: CacheStore) -> None:
    store.apply(full(1, [entry(1)]))
    assert store.apply(delta(2, 1, [entry(2)], ["e2"])) == 1
    assert store.lookup(entry(2).cred) == []


def test_a_chain_of_deltas_applies_in_order(store: CacheStore) -> None:
    store.apply(full(1, []))
    for v in range(2, 12):
        store.apply(delta(v, v - 1, [entry(v)], [f"e{v - 2}"]))
    assert store.version == 11
    assert [e.id for e in store.entries()] == ["e10", "e11"]


_entries = st.lists(struct(Entry), max_size=6).map(lambda es: list({e.id: e for e in es}.values()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_entries, steps=st.lists(st.tuples(_entries, st.lists(st.text(min_size=1, max_size=12), max_size=4)),
                                      max_size=5))
def test_full_then_deltas_match_a_dictionary_model(first: list[Entry], steps: list[tuple[list[Entry], list[str]]]
                                                   ) -> None:
    model = {e.id: e for e in first}
    with tempfile.TemporaryDirectory() as d, CacheStore(Path(d) / "c.db") as s:
        s.apply(full(1, first))
        for v, (upsert, remove) in enumerate(steps, start=2):
            model.update({e.id: e for e in upsert})
            for r in remove:
                model.pop(r, None)
            assert s.apply(delta(v, v - 1, upsert, remove)) == len(model)
        assert list(s.entries()) == [model[k] for k in sorted(model)]
        by_cred: dict[str, list[Entry]] = {}
        for k in sorted(model):
            by_cred.setdefault(model[k].cred, []).append(model[k])
        for cred, es in by_cred.items():
            assert s.lookup(cred) == es


# --- the signed clock floor --------------------------------------------------------------


def test_newest_issued_at_only_ever_grows(store: CacheStore) -> None:
    store.apply(full(1, [], issued_at=1000))
    assert store.newest_issued_at == 1000
    assert store.note_issued_at(2000) == 2000
    assert store.note_issued_at(1500) == 2000
    store.apply(full(2, [], issued_at=1200))  # a newer version signed earlier: no step back
    assert store.newest_issued_at == 2000
    store.apply(full(3, [], issued_at=3000))
    assert store.newest_issued_at == 3000


def test_a_refused_cache_does_not_move_newest_issued_at(store: CacheStore) -> None:
    store.apply(full(5, [], issued_at=1000))
    with pytest.raises(WireError):
        store.apply(full(5, [], issued_at=9000))
    assert store.newest_issued_at == 1000


def test_note_issued_at_does_not_wait_for_a_long_apply_elsewhere(store: CacheStore) -> None:
    store.apply(full(1, [], issued_at=1000))
    other = sqlite3.connect(store.path, isolation_level=None)  # e.g. the agent's cache worker
    other.execute("BEGIN IMMEDIATE")  # holds the write lock, as a large apply does
    try:
        t0 = time.monotonic()
        assert store.note_issued_at(5000) == 5000
        assert time.monotonic() - t0 < 1.0
        assert store.newest_issued_at == 5000  # counts at once, from memory
    finally:
        other.execute("ROLLBACK")
        other.close()
    with CacheStore(store.path, read_only=True) as reader:
        assert reader.newest_issued_at == 1000  # not written yet
    store.note_issued_at(10)  # the next note writes what was kept in memory
    with CacheStore(store.path, read_only=True) as reader:
        assert reader.newest_issued_at == 5000


def test_two_connections_can_create_a_new_file_at_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    for i in range(10):
        start = threading.Barrier(4)

        def open_close(path: Path = tmp_path / f"c{i}.db", start: threading.Barrier = start) -> None:
            try:
                start.wait()
                CacheStore(path).close()  # each connection on its own thread, as the agent does
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_close) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors
        with CacheStore(tmp_path / f"c{i}.db") as s:
            assert s.version is None and s.count() == 0


# --- the hot path -------------------------------------------------------------------------


def test_lookup_searches_the_cred_index_and_never_scans(store: CacheStore) -> None:
    store.apply(full(1, [entry(i) for i in range(50)]))
    with sqlite3.connect(store.path) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {LOOKUP_SQL}", (entry(1).cred,))]
    assert any("USING INDEX entries_cred" in p for p in plan), plan
    assert not any("SCAN" in p for p in plan), plan


def test_lookup_among_100000_entries_takes_well_under_a_millisecond(store: CacheStore) -> None:
    store.apply(full(1, [entry(i) for i in range(100_000)]))
    rng = random.Random(1)
    times = []
    for _ in range(2000):
        n = rng.randrange(200_000)  # half of them unknown
        t0 = time.perf_counter()
        found = store.lookup(entry(n).cred)
        times.append(time.perf_counter() - t0)
        assert len(found) == (1 if n < 100_000 else 0)
    assert statistics.median(times) < 0.0005


def test_lookup_with_meta_reads_entries_and_expiry_together(store: CacheStore) -> None:
    assert store.lookup_with_meta(entry(1).cred) == ([], store.meta())
    store.apply(full(4, [entry(1)], expires_at=1_700_099_999))
    found, meta = store.lookup_with_meta(entry(1).cred)
    assert found == [entry(1)]
    assert (meta.version, meta.expires_at, meta.entry_count) == (4, 1_700_099_999, 1)
    store.apply(delta(5, 4))  # the store is still writable: the read snapshot was closed
    assert store.version == 5


# --- readers in other processes ------------------------------------------------------------


def test_a_read_only_store_sees_what_the_writer_commits(store: CacheStore) -> None:
    store.apply(full(1, [entry(1)]))
    reader = CacheStore(store.path, read_only=True)
    try:
        assert reader.version == 1
        store.apply(delta(2, 1, [entry(2)]))
        assert reader.version == 2
        assert reader.lookup(entry(2).cred) == [entry(2)]
        with pytest.raises(StorageError):
            reader.apply(full(3, []))
        assert store.version == 2
    finally:
        reader.close()


# --- crash atomicity with real SIGKILLs -----------------------------------------------------

OLD_N, NEW_N = 20_000, 50_000


def _body_for(version: int) -> tuple[str, int]:
    """Versions alternate between two caches of different sizes and id prefixes, so that
    a version's expected content is known without remembering anything."""
    return ("a", OLD_N) if version % 2 else ("b", NEW_N)


def _assert_whole(db: Path, allowed: set[int]) -> int:
    with CacheStore(db) as s:
        meta = s.meta()
        assert meta.version in allowed, (meta.version, allowed)
        assert meta.version is not None
        prefix, n = _body_for(meta.version)
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
            total, ours = conn.execute("SELECT count(*), sum(id LIKE ?) FROM entries", (f"{prefix}%",)).fetchone()
        assert (meta.entry_count, total, ours) == (n, n, n)
        assert s.lookup(entry(n - 1, prefix=prefix).cred)[0].id == f"{prefix}{n - 1}"
        return meta.version


def test_apply_killed_at_random_moments_leaves_the_old_or_the_new_cache_whole(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    files = {}
    for prefix, n in (_body_for(1), _body_for(2)):
        files[prefix] = tmp_path / f"{prefix}.json"
        files[prefix].write_bytes(msgspec.json.encode(full(0, [entry(i, prefix=prefix) for i in range(n)])))
    with CacheStore(db) as s:
        s.apply(msgspec.structs.replace(msgspec.json.decode(files["a"].read_bytes(), type=CacheFull), version=1))

    def spawn(version: int) -> Child:
        return Child("cache", str(db), str(files[_body_for(version)[0]]), str(version))

    # Calibrate on one undisturbed apply, while a read-only reader in this process polls:
    # it must never be blocked and never see a mixture.
    child = spawn(2)
    try:
        assert child.readline() == "applying"
        reader = CacheStore(db, read_only=True)
        seen = set()
        while child.proc.poll() is None:
            meta = reader.meta()
            assert meta.version is not None
            assert meta.entry_count == _body_for(meta.version)[1]
            seen.add(meta.version)
        reader.close()
        done = child.rest()
        assert child.proc.returncode == 0, done
        fastest = {"a": float("inf"), "b": float(done[0].split()[2])}  # per body: seconds to apply
    finally:
        child.close()
    current = _assert_whole(db, {2})

    # Kill at a random moment around the apply (a few land after the commit, in the WAL
    # checkpoint or the exit). The machine's speed varies (other work runs beside the
    # tests), so the window follows the fastest apply of each body seen so far.
    rng = random.Random(20240611)
    kills = kept_old = got_new = 0
    for _ in range(100):
        if kills >= 20 and kept_old and got_new:
            break
        old = current
        child = spawn(old + 1)
        body = _body_for(old + 1)[0]
        try:
            assert child.readline() == "applying"
            window = fastest[body] if fastest[body] < float("inf") else fastest["b"]
            killed = child.kill_after(rng.uniform(0, window * 1.3))
            kills += killed
            if not killed:  # it finished first: learn how fast an apply is right now
                done = child.rest()
                fastest[body] = min(fastest[body], float(done[0].split()[2]))
        finally:
            child.close()
        current = _assert_whole(db, {old, old + 1})
        kept_old += current == old
        got_new += current == old + 1
    print(f"apply {fastest} s, {kills} kills, kept old {kept_old}, got new {got_new}, reader saw {seen}")
    assert kills >= 20
    assert kept_old, "no kill landed inside an apply"
    assert got_new


# --- a full disk ------------------------------------------------------------------------------


def test_on_a_full_disk_apply_fails_and_the_old_cache_still_answers(small_fs: Path) -> None:
    with CacheStore(small_fs / "cache.db") as store:
        old = [entry(i) for i in range(200)]
        store.apply(full(1, old))
        filler = fill(small_fs)
        with pytest.raises(StorageError, match="version 2"):
            store.apply(full(2, [entry(i, prefix="n") for i in range(20_000)]))
        assert store.version == 1
        assert store.count() == 200
        assert store.lookup(old[17].cred) == [old[17]]
        with pytest.raises(StorageError):
            store.apply(delta(2, 1, [entry(i, prefix="n") for i in range(2000)]))
        assert list(store.entries()) == sorted(old, key=lambda e: e.id)
        # Once there is room again, the hub's next cache applies.
        filler.unlink()
        assert store.apply(delta(2, 1, [entry(1, prefix="n")])) == 201
    with CacheStore(small_fs / "cache.db") as store:
        assert store.version == 2


def test_a_read_only_view_of_a_file_being_created_shows_no_cache_yet(tmp_path: Path) -> None:
    import sqlite3 as _sqlite3

    path = tmp_path / "cache.db"
    _sqlite3.connect(path).close()  # the file exists, the agent has not made its tables yet
    with CacheStore(path, read_only=True) as c:
        assert (c.version, c.count()) == (None, 0)


def streamed(version: int, entries: list[dict[str, object]]) -> CacheFullStream:
    doc = {"type": "cache.full", "site": SITE, "version": version, "issued_at": 1_700_000_000,
           "expires_at": 1_700_086_400, "entries": entries}
    body = decode(encode(doc), SignedBodyStream)
    assert isinstance(body, CacheFullStream)
    return body


def test_a_streamed_full_cache_applies_like_a_decoded_one(store: CacheStore) -> None:
    entries = [entry(n) for n in range(50)]
    assert store.apply(streamed(1, [msgspec.to_builtins(e) for e in entries])) == 50
    assert list(store.entries()) == sorted(entries, key=lambda e: e.id)


@pytest.mark.parametrize("bad", ["duplicate", "malformed"])
def test_a_streamed_cache_with_a_bad_entry_changes_nothing(store: CacheStore, bad: str) -> None:
    store.apply(full(1, [entry(1), entry(2)]))
    before = snapshot(store)
    rows: list[dict[str, object]] = [msgspec.to_builtins(entry(n)) for n in range(10, 30)]
    if bad == "duplicate":
        rows.append(dict(rows[3]))
    else:
        rows.insert(15, {**rows[15], "cred": "not-a-hash"})
    with pytest.raises(WireError) as exc:
        store.apply(streamed(2, rows))
    assert exc.value.code == "malformed"
    assert snapshot(store) == before
