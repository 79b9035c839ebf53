"""The store contract for the alert conditions' starts (run against every implementation,
tests/hub/store_contract.py): one start per (site, kind) while the condition holds, the
earliest any node saw, written only when the condition starts or ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hub.store import Store, open_store
from tests.hub._bookings import NOW
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401


def count_writes(store: Store) -> list[None]:
    """From now on, one entry per write transaction ``store`` begins (its ``_write``,
    wrapped on this object only)."""
    writes: list[None] = []
    write = store._write  # type: ignore[attr-defined]

    @contextmanager
    def counted() -> Iterator[Any]:
        writes.append(None)
        with write() as c:
            yield c

    store._write = counted  # type: ignore[attr-defined]
    return writes


def test_a_condition_keeps_its_first_start_until_it_ends(store: Store) -> None:
    assert store.alert_conditions() == {}
    assert store.hold_condition("minheim", "clock_untrusted", since=NOW) == NOW
    assert store.hold_condition("minheim", "clock_untrusted", since=NOW + 60) == NOW  # still the first
    assert store.hold_condition("minheim", "cache_stale", since=NOW + 5) == NOW + 5
    assert store.hold_condition("altdorf", "cache_stale", since=NOW + 7) == NOW + 7
    assert store.alert_conditions() == {("altdorf", "cache_stale"): NOW + 7, ("minheim", "cache_stale"): NOW + 5,
                                        ("minheim", "clock_untrusted"): NOW}
    assert store.alert_conditions("altdorf") == {("altdorf", "cache_stale"): NOW + 7}
    assert store.end_condition("minheim", "clock_untrusted")
    assert not store.end_condition("minheim", "clock_untrusted")
    assert store.alert_conditions("minheim") == {("minheim", "cache_stale"): NOW + 5}
    # It starts again at its next sighting.
    assert store.hold_condition("minheim", "clock_untrusted", since=NOW + 100) == NOW + 100


def test_an_earlier_sighting_moves_the_start_back(store: Store) -> None:
    store.hold_condition("minheim", "cache_stale", since=NOW + 30)
    assert store.hold_condition("minheim", "cache_stale", since=NOW + 10) == NOW + 10
    assert store.alert_conditions() == {("minheim", "cache_stale"): NOW + 10}


def test_a_sighting_that_changes_nothing_writes_nothing(store: Store) -> None:
    writes = count_writes(store)
    store.hold_condition("minheim", "cache_stale", since=NOW)
    assert len(writes) == 1
    for t in (NOW, NOW + 1, NOW + 2):
        assert store.hold_condition("minheim", "cache_stale", since=t) == NOW
    assert not store.end_condition("minheim", "clock_untrusted")  # none recorded
    assert len(writes) == 1
    assert store.end_condition("minheim", "cache_stale")
    assert not store.end_condition("minheim", "cache_stale")
    assert len(writes) == 2


def test_nodes_sighting_one_condition_at_once_keep_the_earliest_start(store_url: str) -> None:
    starts = [NOW + 40, NOW + 10, NOW + 30, NOW + 20]
    barrier = threading.Barrier(len(starts))
    kept: dict[float, float] = {}
    failed: list[BaseException] = []

    def node(at: float) -> None:  # a store belongs to one thread: each node opens its own
        try:
            with open_store(store_url) as s:
                barrier.wait(10)
                kept[at] = s.hold_condition("minheim", "clock_untrusted", since=at)
        except BaseException as exc:  # reported below
            failed.append(exc)

    threads = [threading.Thread(target=node, args=(at,)) for at in starts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failed and len(kept) == len(starts)
    # Each node got the earliest start committed when it looked, never a later one than its own.
    assert all(v <= at for at, v in kept.items())
    with open_store(store_url) as s:
        assert s.alert_conditions() == {("minheim", "clock_untrusted"): NOW + 10}
