"""The store contract for several hub nodes (run against every implementation,
tests/hub/store_contract.py): node heartbeats, the leader's lease as an atomic
compare-and-set with a term that counts changes of holder, and the change feed."""

from __future__ import annotations

import threading

import pytest

from hub.store import NodeInfo, Store, open_store
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401

T0 = 1_800_000_000.0


def node(name: str, *, role: str = "follower", pid: int = 100, instance: str = "i1") -> NodeInfo:
    return NodeInfo(id=name, host=f"host-{name}", pid=pid, version="1.2.3", started_at=T0 - 60, role=role,
                    instance=instance)


def test_a_node_heartbeat_is_recorded_and_updated(store: Store) -> None:
    assert store.nodes() == []
    store.heartbeat_node(node("b"), now=T0)
    store.heartbeat_node(node("a"), now=T0 + 1)
    store.heartbeat_node(node("b", role="leader", pid=200, instance="i2"), now=T0 + 5)
    rows = store.nodes()
    assert [r.id for r in rows] == ["a", "b"]
    b = rows[1]
    assert (b.host, b.pid, b.version, b.role, b.instance, b.last_seen, b.started_at) == (
        "host-b", 200, "1.2.3", "leader", "i2", T0 + 5, T0 - 60)
    assert store.forget_node("a") is True
    assert store.forget_node("a") is False
    assert [r.id for r in store.nodes()] == ["b"]


def test_the_first_node_takes_the_free_lease_and_renews_it_in_the_same_term(store: Store) -> None:
    assert store.lease() is None
    first = store.try_lease("a", now=T0, seconds=15)
    assert first.held_by("a", T0) and first.term == 1 and first.expires_at == T0 + 15
    assert first.previous is None
    again = store.try_lease("a", now=T0 + 5, seconds=15)
    assert again.held_by("a", T0 + 5) and again.term == 1
    assert (again.expires_at, again.renewed_at, again.acquired_at) == (T0 + 20, T0 + 5, T0)
    assert store.lease() == again


def test_another_node_cannot_take_a_valid_lease_but_takes_an_expired_one_with_a_new_term(store: Store) -> None:
    store.try_lease("a", now=T0, seconds=15)
    refused = store.try_lease("b", now=T0 + 14.9, seconds=15)
    assert refused.holder == "a" and not refused.held_by("b", T0 + 14.9) and refused.term == 1
    assert refused.expires_at == T0 + 15  # the refused attempt changed nothing
    taken = store.try_lease("b", now=T0 + 18, seconds=15)
    assert taken.held_by("b", T0 + 18) and taken.term == 2
    assert taken.previous == "a" and taken.vacant == pytest.approx(3.0) and taken.acquired_at == T0 + 18
    # the old holder comes back: it is refused, and learns it lost
    late = store.try_lease("a", now=T0 + 19, seconds=15)
    assert late.holder == "b" and late.term == 2


def test_a_released_lease_goes_to_the_next_node_at_once_with_the_time_between(store: Store) -> None:
    store.try_lease("a", now=T0, seconds=15)
    assert store.release_lease("b", now=T0 + 1) is False  # not b's to release
    assert store.release_lease("a", now=T0 + 2) is True
    released = store.lease()
    assert released is not None and released.holder is None and released.expires_at == T0 + 2
    assert store.release_lease("a", now=T0 + 2) is False
    taken = store.try_lease("b", now=T0 + 2.5, seconds=15)
    assert taken.held_by("b", T0 + 2.5) and taken.term == 2 and taken.vacant == pytest.approx(0.5)
    assert taken.previous == "a"
    # the same node taking it back after its own release is a new term too
    store.release_lease("b", now=T0 + 3)
    assert store.try_lease("b", now=T0 + 3, seconds=15).term == 3


def test_a_lease_of_no_time_is_refused_and_changes_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="positive"):
        store.try_lease("a", now=T0, seconds=0)
    assert store.lease() is None


def test_racing_nodes_on_their_own_connections_get_one_holder_per_term(store_url: str) -> None:
    """Eight nodes, each on its own store, try at once, over and over past expiries:
    at every instant at most one holds the lease, and a term has exactly one holder."""
    holders: dict[int, set[str]] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        s = open_store(store_url)
        try:
            start.wait(10)
            for step in range(40):
                now = T0 + step  # every node's clock agrees; the lease lasts 3 steps
                got = s.try_lease(name, now=now, seconds=3)
                if got.held_by(name, now):
                    with lock:
                        holders.setdefault(got.term, set()).add(name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(f"n{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert holders  # someone held it
    assert all(len(names) == 1 for names in holders.values()), holders
    final = open_store(store_url)
    try:
        lease = final.lease()
        assert lease is not None and lease.term == max(holders)
    finally:
        final.close()


def test_the_change_feed_gives_entries_in_order_after_an_id(store: Store) -> None:
    assert store.last_change() == 0 and store.changes_since(0) == []
    assert store.record_changes("a", [], at=T0) == 0
    last = store.record_changes("a", [("minheim", "status"), ("altdorf", "events")], at=T0)
    store.record_changes("b", [("minheim", "door")], at=T0 + 1)
    feed = store.changes_since(0)
    assert [(c.node, c.site_id, c.what) for c in feed] == [
        ("a", "minheim", "status"), ("a", "altdorf", "events"), ("b", "minheim", "door")]
    assert feed[1].id == last and store.last_change() == feed[2].id
    assert [c.what for c in store.changes_since(last)] == ["door"]
    assert len(store.changes_since(0, limit=2)) == 2
    # purging keeps the newest entry, so that ids never go back
    assert store.purge_changes(T0 + 10) == 2
    assert [c.id for c in store.changes_since(0)] == [feed[2].id]
    nxt = store.record_changes("a", [("minheim", "cache")], at=T0 + 2)
    assert nxt > feed[2].id
