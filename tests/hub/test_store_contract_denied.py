"""The store contract for a site's refused badges read from its stored events (run
against every implementation, tests/hub/store_contract.py): ``access_denied`` gives the
site's ``access.denied`` events received since a time, newest first, at most ``limit``,
with the door, reason and clock picked from the payload."""

from __future__ import annotations

import json

import pytest

from hub.store import Store
from hub.store.denied import DeniedRow
from tests.hub._bookings import NOW
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401


def _denied(seq: int, door: str, reason: str = "unknown_credential", *, ts: float = NOW,
            synced: bool = True) -> tuple[int, str, str, float, str]:
    payload = {"type": "access.denied", "id": f"d{seq}", "seq": seq, "boot": "b", "ts": ts, "clock_synced": synced,
               "door": door, "cred": None, "reason": reason}
    return (seq, f"d{seq}", "access.denied", ts, json.dumps(payload))


def test_a_sites_refusals_received_since_a_time_newest_first(store: Store) -> None:
    store.store_events("minheim", [_denied(1, "main")], received_at=NOW + 1)
    store.store_events("minheim", [_denied(2, "main", "wrong_door", ts=NOW + 2),
                                   _denied(3, "cowork", "lockdown", ts=5.0, synced=False)], received_at=NOW + 10)
    store.store_events("minheim", [(4, "o4", "door.opened", NOW + 11, json.dumps({"door": "main"}))],
                       received_at=NOW + 11)
    store.store_events("altdorf", [_denied(1, "door")], received_at=NOW + 12)
    store.store_events("minheim", [_denied(5, "main", ts=NOW + 20)], received_at=NOW + 20)
    got = store.access_denied("minheim", received_since=NOW + 10, limit=100)
    assert got[0] == DeniedRow(door="main", reason="unknown_credential", ts=NOW + 20, clock_synced=True,
                               received_at=NOW + 20)
    assert sorted((r.door, r.reason, r.ts, r.clock_synced, r.received_at) for r in got[1:]) == [
        ("cowork", "lockdown", 5.0, False, NOW + 10), ("main", "wrong_door", NOW + 2, True, NOW + 10)]
    # The time the alerts count: the site's where its clock was trusted, else the hub's.
    assert sorted(r.at for r in got) == [NOW + 2, NOW + 10, NOW + 20]
    assert [r.received_at for r in store.access_denied("minheim", received_since=0.0, limit=100)] == [
        NOW + 20, NOW + 10, NOW + 10, NOW + 1]
    assert store.access_denied("minheim", received_since=NOW + 21, limit=100) == []
    assert [r.door for r in store.access_denied("altdorf", received_since=0.0, limit=100)] == ["door"]
    assert store.access_denied("wehlen", received_since=0.0, limit=100) == []


def test_at_most_limit_refusals_the_newest_received(store: Store) -> None:
    for i in range(1, 6):
        store.store_events("minheim", [_denied(i, "main", ts=NOW + i)], received_at=NOW + i)
    assert [r.ts for r in store.access_denied("minheim", received_since=0.0, limit=2)] == [NOW + 5, NOW + 4]
    assert [r.ts for r in store.access_denied("minheim", received_since=0.0, limit=1)] == [NOW + 5]


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_a_limit_out_of_range_is_refused(store: Store, limit: int) -> None:
    store.store_events("minheim", [_denied(1, "main")], received_at=NOW)
    with pytest.raises(ValueError, match="limit must be 1 to 10000"):
        store.access_denied("minheim", received_since=0.0, limit=limit)
    assert len(store.access_denied("minheim", received_since=0.0, limit=1)) == 1


def test_a_stored_refusal_without_a_door_is_skipped(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store.store_events("minheim", [(1, "d1", "access.denied", NOW, json.dumps({"reason": "wrong_door"})),
                                   (2, "d2", "access.denied", NOW, "not json"), _denied(3, "main")],
                       received_at=NOW)
    assert [r.door for r in store.access_denied("minheim", received_since=0.0, limit=10)] == ["main"]
    assert "stored access.denied seq 1 unreadable" in caplog.text
    assert "stored access.denied seq 2 unreadable" in caplog.text
