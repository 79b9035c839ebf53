"""The store contract for building caches at scale (every implementation): several
operations in one transaction (``Store.batch``), the lean bookings of a site's cache
(``cache_bookings``), and a complete sync large enough to take the bulk path."""

from __future__ import annotations

import pytest

from hub.store import CacheBooking, Store, StoreError, open_store
from tests.hub._bookings import NOW, Bk
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401


def _version(store: Store, site: str, version: int, base: int) -> None:
    store.record_cache_version(site, version=version, base_version=base, built_at=NOW, added={"e": '{"id":"e"}'},
                               changed={}, removed=[], n_entries=1, size=10)


def test_a_batch_commits_its_operations_together(store_url: str) -> None:
    store = open_store(store_url)
    other = open_store(store_url)
    try:
        with store.batch():
            _version(store, "minheim", 10, 0)
            _version(store, "altdorf", 10, 0)
            assert store.cache_state("minheim").version == 10  # type: ignore[union-attr]
            assert other.cache_state("minheim") is None  # not committed yet: another connection sees nothing
        assert {s: other.cache_state(s).version for s in ("minheim", "altdorf")} == {  # type: ignore[union-attr]
            "minheim": 10, "altdorf": 10}
    finally:
        store.close()
        other.close()


def test_an_exception_leaving_a_batch_undoes_all_of_it(store: Store) -> None:
    with pytest.raises(RuntimeError), store.batch():
        _version(store, "minheim", 10, 0)
        _version(store, "altdorf", 10, 0)
        raise RuntimeError("the commit of a batch failed")
    assert store.cache_state("minheim") is None
    assert store.cache_state("altdorf") is None
    _version(store, "minheim", 11, 0)  # the store works on
    assert store.cache_state("minheim").version == 11  # type: ignore[union-attr]


def test_an_operation_failing_inside_a_batch_undoes_only_itself(store: Store) -> None:
    with store.batch():
        _version(store, "minheim", 10, 0)
        with pytest.raises(StoreError):
            store.set_retained_full("altdorf", 10)  # no cache built yet
        with pytest.raises(RuntimeError), store.batch():  # a nested batch is a savepoint
            _version(store, "altdorf", 10, 0)
            raise RuntimeError("this site's rebuild failed")
        store.set_retained_full("minheim", 10)
    state = store.cache_state("minheim")
    assert state is not None and (state.version, state.retained_version) == (10, 10)
    assert store.cache_state("altdorf") is None


def test_cache_bookings_are_the_confirmed_ones_of_the_window_lean(store: Store) -> None:
    store.upsert_bookings([
        Bk("late", "res-a", "m2", NOW + 50, NOW + 90, pin="4711"),
        Bk("in", "res-b", "m1", NOW, NOW + 60),
        Bk("ended", "res-a", "m1", NOW - 120, NOW - 60),
        Bk("later", "res-a", "m1", NOW + 1000, NOW + 2000),
        Bk("cancelled", "res-a", "m1", NOW, NOW + 60, status="cancelled"),
        Bk("other-site", "res-c", "m1", NOW, NOW + 60),
        Bk("unmapped", "res-zzz", "m1", NOW, NOW + 60),
    ])
    got = store.cache_bookings("minheim", NOW - 10, NOW + 1000)
    assert got == [CacheBooking("in", "cowork", "m1", NOW, NOW + 60, None),
                   CacheBooking("late", "cowork", "m2", NOW + 50, NOW + 90, "4711")]
    full = store.bookings_for_site_window("minheim", NOW - 10, NOW + 1000, status="confirmed")
    assert [(b.id, b.room_id, b.member_id, b.start, b.end, b.pin) for b in full] == [tuple(b) for b in got]
    assert store.cache_bookings("nowhere", 0, 2**40) == []


def test_a_large_complete_sync_reports_exactly_what_changed(store: Store) -> None:
    """20,000 bookings (the bulk path of a first sync), then the same platform with one
    moved, one cancelled, one vanished and one new: exactly those four change."""
    res = ["res-a", "res-c"]
    first = [Bk(f"b{i}", res[i % 2], f"m{i % 97}", NOW + i, NOW + i + 60, source="ics") for i in range(20_000)]
    changes = store.replace_bookings("ics", first)
    assert len(changes.changed) == 20_000
    assert changes.sites == {"minheim", "altdorf"}
    again = list(first)
    again[1] = Bk("b1", "res-a", "m1", NOW + 1, NOW + 61, source="ics", updated_at=NOW + 5)  # moved to minheim
    again[2] = Bk("b2", "res-a", "m2", NOW + 2, NOW + 62, source="ics", status="cancelled", updated_at=NOW + 5)
    del again[3]  # b3 (altdorf) vanished
    again.append(Bk("new", "res-c", "m5", NOW, NOW + 60, source="ics"))
    changes = store.replace_bookings("ics", again)
    assert sorted(changes.changed) == ["b1", "b2", "b3", "new"]
    assert changes.sites == {"minheim", "altdorf"}
    assert store.get_booking("b3").status == "cancelled"  # type: ignore[union-attr]
    assert store.get_booking("b1").resource_id == "res-a"  # type: ignore[union-attr]
    assert not store.replace_bookings("ics", again)  # the same again: nothing
