"""The store contract for a member's data (run against every implementation,
tests/hub/store_contract.py): what ``member_bookings``, ``member_enrollments`` and
``events_of_who`` find, and ``erase_member`` deleting the member, their credentials (PINs
included), grants, enrollments and bookings in one go while leaving other members and the
events alone."""

from __future__ import annotations

import json

from hub.store import Store
from tests.hub._bookings import NOW, Bk
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401


def _two_members(store: Store) -> tuple[str, str]:
    """Members anna (card, PIN, grant, two bookings, an enrollment, two events) and bert
    (card, booking, event); their pseudonyms."""
    anna = store.add_member("anna", "Anna Example", "anna@example.org")
    bert = store.add_member("bert", "Bert Example", "bert@example.org")
    store.add_credential("anna", "em4100:0A00B1C2D3")
    store.add_credential("anna", "pin:48151623")
    store.add_credential("bert", "em4100:0B00B1C2D3")
    store.add_grant("anna", "minheim", ["main"], label="caretaker")
    store.upsert_bookings([Bk("b-1", "res-a", "anna", NOW, NOW + 3600, pin="112233"),
                           Bk("b-2", "res-c", "anna", NOW + 7200, NOW + 9000),
                           Bk("b-3", "res-a", "bert", NOW, NOW + 3600)])
    store.add_enrollment("cmd-1", "minheim", "anna", "front", created_at=NOW, expires_at=NOW + 60)
    store.store_events("minheim", [
        (1, "ev-1", "access.granted", float(NOW), json.dumps({"door": "main", "who": anna.who})),
        (2, "ev-2", "access.granted", float(NOW + 1), json.dumps({"door": "main", "who": bert.who})),
        (3, "ev-3", "door.opened", float(NOW + 2), json.dumps({"door": "main"})),
        (4, "ev-4", "access.granted", float(NOW + 3), json.dumps({"door": "main", "who": anna.who})),
    ])
    return anna.who, bert.who


def test_a_members_bookings_enrollments_and_events_are_found(store: Store) -> None:
    anna, bert = _two_members(store)
    assert [b.id for b in store.member_bookings("anna")] == ["b-1", "b-2"]
    assert store.member_bookings("anna")[0].pin == "112233"
    assert [e.command_id for e in store.member_enrollments("anna")] == ["cmd-1"]
    assert store.member_enrollments("bert") == []
    assert [e.seq for e in store.events_of_who(anna)] == [1, 4]
    assert [e.seq for e in store.events_of_who(bert)] == [2]
    assert store.events_of_who("m-0000000000000000") == []


def test_erasing_a_member_deletes_their_rows_at_once_and_nothing_else(store: Store) -> None:
    anna, bert = _two_members(store)
    done = store.erase_member("anna")
    assert done == {"credentials": 2, "grants": 1, "enrollments": 1, "bookings": 2, "members": 1}
    assert store.get_member("anna") is None
    assert store.credentials_of("anna") == []
    assert store.owner_of_credential("em4100:0A00B1C2D3") is None
    assert store.owner_of_credential("pin:48151623") is None
    assert store.grants_of("anna") == []
    assert store.member_bookings("anna") == []
    assert store.get_booking("b-1") is None
    assert store.member_enrollments("anna") == []
    assert store.get_enrollment("cmd-1") is None
    # The events stay (pseudonymous; retention purges them), and so does everyone else.
    assert [e.seq for e in store.events_of_who(anna)] == [1, 4]
    assert store.member_by_who(anna) is None
    assert store.get_member("bert") is not None
    assert [c.credential for c in store.credentials_of("bert")] == ["em4100:0B00B1C2D3"]
    assert [b.id for b in store.member_bookings("bert")] == ["b-3"]
    assert store.member_by_who(bert) is not None
    # The credential is free again: a new member may be given it.
    store.add_member("carla", "Carla", None)
    store.add_credential("carla", "em4100:0A00B1C2D3")


def test_erasing_an_unknown_member_changes_nothing(store: Store) -> None:
    _two_members(store)
    store.add_grant("bert", "altdorf", None)
    assert store.erase_member("nobody") is None
    assert store.erase_member("anna") is not None
    assert store.erase_member("anna") is None  # twice: the second finds nobody
    assert [m.id for m in store.members()] == ["bert"]
    assert len(store.grants_of("bert")) == 1
