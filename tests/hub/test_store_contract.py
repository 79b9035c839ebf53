"""The store contract (run against every implementation, tests/hub/store_contract.py):
events stored once per (site, seq) whatever the order, gaps found and filled, bookings
changes reported only when real, credentials owned by one member, and state shared by the
stores opened on one URL."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import replace

import pytest

from hub.errors import HubError
from hub.store import (
    CredentialConflict,
    InvalidCredential,
    Store,
    StoreError,
    SyncState,
    UnknownMember,
    UnknownSite,
    open_store,
)
from tests.hub._bookings import NOW, Bk
from tests.hub.store_contract import SITES, Room, Site, events, store_fixture, store_url_fixture  # noqa: F401
from wire import messages as m

# --- events ---------------------------------------------------------------------------------


def test_replaying_1000_events_twice_out_of_order_stores_each_once(store: Store) -> None:
    rng = random.Random(7)
    seqs = list(range(1, 1001))
    total_new = 0
    for _ in range(2):
        rng.shuffle(seqs)
        for i in range(0, len(seqs), 37):
            total_new += store.store_events("minheim", events(seqs[i : i + 37])).new
    assert total_new == 1000
    last = store.store_events("minheim", events([1000, 999, 1]))
    assert (last.new, last.acked_upto, last.gaps) == (0, 1000, ())
    assert len(store.events(site_id="minheim", limit=5000)) == 1000
    state = store.site_state("minheim")
    assert state is not None
    assert (state.acked_upto, state.max_seq, state.gaps) == (1000, 1000, ())


def test_a_gap_holds_acked_upto_until_the_missing_event_arrives(store: Store) -> None:
    r = store.store_events("minheim", events([*range(1, 500), *range(503, 1001)]))
    assert r.new == 997
    assert r.acked_upto == 499
    assert r.gaps == ((500, 502),)
    r = store.store_events("minheim", events([501]))
    assert (r.new, r.acked_upto, r.gaps) == (1, 499, ((500, 500), (502, 502)))
    r = store.store_events("minheim", events([500]))
    assert (r.new, r.acked_upto, r.gaps) == (1, 501, ((502, 502),))
    r = store.store_events("minheim", events([502, 502, 3]))
    assert (r.new, r.acked_upto, r.gaps) == (1, 1000, ())


def test_events_of_two_sites_are_counted_apart(store: Store) -> None:
    store.store_events("minheim", events([1, 2, 3]))
    r = store.store_events("altdorf", events([1, 2], "altdorf"))
    assert (r.new, r.acked_upto) == (2, 2)
    assert {e.site_id for e in store.events(limit=10)} == {"minheim", "altdorf"}


def test_a_first_batch_starting_late_reports_the_gap_from_one(store: Store) -> None:
    r = store.store_events("minheim", events([5, 6]))
    assert (r.acked_upto, r.gaps) == (0, ((1, 4),))


def test_purged_events_are_not_stored_again_when_resent(store: Store) -> None:
    store.store_events("minheim", events(list(range(1, 101))), received_at=NOW)
    assert store.purge_events(NOW + 1) == 100
    r = store.store_events("minheim", events(list(range(1, 102))), received_at=NOW + 2)
    assert (r.new, r.acked_upto) == (1, 101)
    assert [e.seq for e in store.events(site_id="minheim")] == [101]


def test_events_query_filters_and_orders_newest_first(store: Store) -> None:
    store.store_events("minheim", events(list(range(1, 21))))
    store.store_events("minheim", [(21, "x", "access.denied", NOW + 21.0, "{}")])
    assert [e.seq for e in store.events(site_id="minheim", limit=3)] == [21, 20, 19]
    assert [e.seq for e in store.events(type="access.denied")] == [21]
    got = store.events(site_id="minheim", since=NOW + 5, until=NOW + 8)
    assert [e.seq for e in got] == [7, 6, 5]
    assert json.loads(got[0].payload)["seq"] == 7


def test_100k_events_in_batches_are_acked_to_the_end(store: Store) -> None:
    batch = 1000
    for start in range(1, 100_001, batch):
        r = store.store_events("minheim", events(list(range(start, start + batch))))
    assert (r.acked_upto, r.gaps) == (100_000, ())


# --- bookings -------------------------------------------------------------------------------


def test_upsert_bookings_reports_only_real_changes(store: Store) -> None:
    first = [Bk("b1", "res-a", "m1", NOW, NOW + 3600), Bk("b2", "res-b", "m2", NOW, NOW + 60),
             Bk("b3", "res-c", "m1", NOW, NOW + 60)]
    changes = store.upsert_bookings(first)
    assert changes.changed == ["b1", "b2", "b3"]
    assert changes.sites == {"minheim", "altdorf"}
    # The same data again, or with only updated_at/source bumped: nothing changed.
    assert not store.upsert_bookings(first)
    assert not store.upsert_bookings([replace(b, updated_at=NOW + 5, source="webhook") for b in first])
    assert store.get_booking("b1") is not None
    assert store.get_booking("b1").updated_at == NOW + 5  # type: ignore[union-attr]
    # A status change counts, and only for that booking.
    changes = store.upsert_bookings([replace(first[0], status="cancelled", updated_at=NOW + 6), first[1]])
    assert changes.changed == ["b1"]
    assert changes.sites == {"minheim"}


def test_a_booking_moved_to_another_site_touches_both(store: Store) -> None:
    store.upsert_bookings([Bk("b1", "res-a", "m1", NOW, NOW + 60)])
    changes = store.upsert_bookings([Bk("b1", "res-c", "m1", NOW, NOW + 60, updated_at=NOW + 1)])
    assert changes.sites == {"minheim", "altdorf"}


def test_an_older_version_of_a_booking_is_ignored(store: Store) -> None:
    store.upsert_bookings([Bk("b1", "res-a", "m1", NOW, NOW + 60, updated_at=NOW + 10)])
    assert not store.upsert_bookings([Bk("b1", "res-a", "m1", NOW, NOW + 60, status="cancelled", updated_at=NOW)])
    assert store.get_booking("b1").status == "confirmed"  # type: ignore[union-attr]


def test_bookings_for_a_site_window(store: Store) -> None:
    store.upsert_bookings([
        Bk("in", "res-b", "m1", NOW, NOW + 60),
        Bk("ended", "res-a", "m1", NOW - 120, NOW - 60),
        Bk("later", "res-a", "m1", NOW + 1000, NOW + 2000),
        Bk("cancelled", "res-a", "m1", NOW, NOW + 60, status="cancelled"),
        Bk("other-site", "res-c", "m1", NOW, NOW + 60),
        Bk("unmapped", "res-zzz", "m1", NOW, NOW + 60),
    ])
    got = store.bookings_for_site_window("minheim", NOW - 10, NOW + 1000)
    assert {b.id for b in got} == {"in", "cancelled"}
    assert {b.room_id for b in got} == {"cowork"}
    assert [b.id for b in store.bookings_for_site_window("minheim", NOW - 10, NOW + 1000, status="confirmed")] == ["in"]
    assert store.sites_for_member("m1", NOW - 10) == {"minheim", "altdorf"}
    assert store.purge_bookings(NOW - 59) == 1


# --- members, credentials, grants -----------------------------------------------------------


def test_a_credential_enrolled_to_another_member_is_refused(store: Store) -> None:
    store.add_member("m1", "Anna Beispiel", "anna@example.org")
    store.add_member("m2", "Bert Muster")
    c = store.add_credential("m1", "em4100:0A00B1C2D3", label="blue fob")
    assert (c.member_id, c.type) == ("m1", "em4100")
    assert store.add_credential("m1", "em4100:0A00B1C2D3").id == c.id  # again to the same member: no-op
    with pytest.raises(CredentialConflict) as info:
        store.add_credential("m2", "em4100:0A00B1C2D3")
    assert isinstance(info.value, HubError)
    assert "0A00B1C2D3" not in str(info.value)
    assert store.owner_of_credential("em4100:0A00B1C2D3") == "m1"
    assert store.credentials_of("m2") == []


def test_malformed_credentials_and_unknown_members_are_refused(store: Store) -> None:
    store.add_member("m1", "Anna")
    with pytest.raises(InvalidCredential):
        store.add_credential("m1", "em4100:xyz")
    with pytest.raises(UnknownMember):
        store.add_credential("nobody", "pin:1234")


def test_import_is_all_or_nothing_and_names_the_row(store: Store) -> None:
    store.add_member("m1", "Anna")
    store.add_member("m2", "Bert")
    store.add_credential("m2", "pin:9999")
    with pytest.raises(CredentialConflict, match="row 3"):
        store.import_credentials([("m1", "pin:1111"), ("m1", "iso14443a:04A1B2C3D4E5F6"), ("m1", "pin:9999")])
    assert store.credentials_of("m1") == []
    assert store.import_credentials([("m1", "pin:1111"), ("m1", "pin:1111"), ("m2", "pin:9999")]) == 1
    assert store.credentials_for_members(["m1", "m2", "m3"]) == {"m1": ["pin:1111"], "m2": ["pin:9999"]}


def test_records_keep_names_and_credentials_out_of_repr(store: Store) -> None:
    member = store.add_member("m1", "Anna Beispiel", "anna@example.org")
    cred = store.add_credential("m1", "wiegand26:3A1F2C")
    text = repr(member) + repr(cred)
    assert "Anna" not in text and "anna@" not in text and "3A1F2C" not in text
    assert member.who.startswith("m-") and "m1" not in member.who[2:]
    assert store.member_by_who(member.who) == member
    # Updating the name keeps the pseudonym.
    assert store.add_member("m1", "Anna B.").who == member.who


def test_removing_a_member_removes_credentials_and_grants(store: Store) -> None:
    store.add_member("m1", "Anna")
    store.add_credential("m1", "pin:1234")
    store.add_grant("m1", "minheim", label="caretaker")
    assert store.remove_member("m1")
    assert store.owner_of_credential("pin:1234") is None
    assert store.grants_for_site("minheim") == []
    assert not store.remove_member("m1")


def test_standing_grants_check_site_and_doors(store: Store) -> None:
    store.add_member("m1", "Anna")
    g = store.add_grant("m1", "minheim", ["main"], valid_from=NOW, valid_until=NOW + 10, label="cleaner")
    assert store.grants_for_site("minheim") == [g]
    assert store.grants_of("m1")[0].doors == ("main",)
    with pytest.raises(UnknownSite):
        store.add_grant("m1", "minheim", ["nope"])
    with pytest.raises(UnknownSite):
        store.add_grant("m1", "atlantis")
    with pytest.raises(StoreError):
        store.add_grant("m1", "minheim", valid_from=NOW, valid_until=NOW - 1)
    assert store.remove_grant(g.id)


# --- sites, sync state, site state ----------------------------------------------------------


def test_sync_sites_follows_the_config(store: Store) -> None:
    assert store.room_for_resource("res-b") == ("minheim", "cowork")
    moved = [Site("minheim", ("main",), (Room("lab", ("main",), ("res-b",)),))]
    store.sync_sites(moved)
    assert store.room_for_resource("res-b") == ("minheim", "lab")
    assert store.room_for_resource("res-c") is None
    assert [r.id for r in store.rooms("minheim")] == ["lab"]
    assert {s.id: s.active for s in store.sites()} == {"minheim": True, "altdorf": False}


def test_sync_state_counts_failures_and_resets(store: Store) -> None:
    assert store.get_sync_state("rest") == SyncState(source="rest")
    store.record_sync_ok("rest", "2024-01-01T00:00:00Z", NOW)
    store.record_sync_error("rest", "HTTP 503", NOW + 60)
    s = store.record_sync_error("rest", "timeout", NOW + 120)
    assert (s.cursor, s.last_ok_at, s.last_error, s.last_error_at, s.failures) == (
        "2024-01-01T00:00:00Z", NOW, "timeout", NOW + 120, 2)
    assert store.record_sync_ok("rest", "c2", NOW + 180).failures == 0


def test_status_door_and_occupancy_reports(store: Store) -> None:
    online = m.Status(state="online", ts=NOW, boot="b1", software="1.0", cache_version=7, clock_synced=True)
    s = store.record_status("minheim", online, NOW)
    assert (s.online, s.since, s.cache_version, s.clock_synced) == (True, NOW, 7, True)
    s = store.record_status("minheim", m.Status(state="offline"), NOW + 50)
    assert (s.online, s.since, s.cache_version, s.software) == (False, NOW + 50, 7, "1.0")
    s = store.update_site_state("minheim", {"outbox_pending": 3, "lockdown": True})
    assert (s.outbox_pending, s.lockdown) == (3, True)
    with pytest.raises(ValueError, match="acked_upto"):
        store.update_site_state("minheim", {"acked_upto": 5})  # type: ignore[typeddict-unknown-key]
    assert store.upsert_door_state("minheim", "main", '{"locked": true}', NOW + 2)
    assert not store.upsert_door_state("minheim", "main", '{"locked": false}', NOW + 1)
    assert store.door_states("minheim") == {"main": ('{"locked": true}', NOW + 2)}
    assert store.upsert_occupancy("minheim", '{"rooms": {}}', NOW)
    assert store.occupancy("minheim") == ('{"rooms": {}}', NOW)
    assert store.occupancy("altdorf") is None


def test_threads_each_with_their_own_store_write_side_by_side(store_url: str) -> None:
    path = store_url
    open_store(path).close()
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def ingest(site: str) -> None:
        try:
            with open_store(path) as own:
                for start in range(1, 2001, 50):
                    r = own.store_events(site, events(list(range(start, start + 50)), site))
                results[site] = r.acked_upto
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(site,)) for site in ("minheim", "altdorf")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {"minheim": 2000, "altdorf": 2000}


def test_a_complete_sync_cancels_what_vanished_from_the_platform(store: Store) -> None:
    store.upsert_bookings([
        Bk("stays", "res-a", "m1", NOW, NOW + 60, source="ics"),
        Bk("vanishes", "res-c", "m1", NOW, NOW + 60, source="ics"),
        Bk("unreadable", "res-a", "m1", NOW, NOW + 60, source="ics"),
        Bk("outside-window", "res-a", "m1", NOW + 10_000, NOW + 10_060, source="ics"),
        Bk("other-source", "res-a", "m1", NOW, NOW + 60, source="rest"),
    ])
    changes = store.replace_bookings("ics", [Bk("stays", "res-a", "m1", NOW, NOW + 60, source="ics")],
                                     window=(NOW - 100, NOW + 1000), keep=["unreadable"])
    assert changes.changed == ["vanishes"]
    assert changes.sites == {"altdorf"}
    status = {b.id: b.status for b in store.bookings_for_site_window("minheim", 0, NOW + 20_000)}
    assert status == {"stays": "confirmed", "unreadable": "confirmed", "outside-window": "confirmed",
                      "other-source": "confirmed"}
    assert store.get_booking("vanishes").status == "cancelled"  # type: ignore[union-attr]
    # Identical complete data again: nothing changes; the booking coming back is confirmed.
    back = [Bk("stays", "res-a", "m1", NOW, NOW + 60, source="ics"), Bk("vanishes", "res-c", "m1", NOW, NOW + 60,
                                                                       source="ics")]
    assert store.replace_bookings("ics", back, window=(NOW - 100, NOW + 1000), keep=["unreadable"]).changed == [
        "vanishes"]
    assert not store.replace_bookings("ics", back, window=(NOW - 100, NOW + 1000), keep=["unreadable"])


def test_members_are_added_in_bulk_in_one_transaction(store_url: str) -> None:
    s = open_store(store_url)
    try:
        assert s.add_members((f"m-{i}", f"Member {i}", None) for i in range(500)) == 500
        assert len(s.members()) == 500
        one = s.get_member("m-7")
        assert one is not None and one.display_name == "Member 7" and one.who.startswith("m-")
        assert s.add_members([("m-7", "Renamed", "x@example.org")]) == 1
        again = s.get_member("m-7")
        assert again is not None and again.display_name == "Renamed" and again.who == one.who
    finally:
        s.close()


def test_the_platform_queue_holds_each_booking_and_kind_once_across_reopening(store_url: str) -> None:
    path = store_url
    with open_store(path) as s:
        assert s.queue_feedback("bk-1", "release", "minheim", NOW, now=NOW)
        assert s.queue_feedback("bk-1", "check_in", "minheim", NOW, now=NOW)
        assert not s.queue_feedback("bk-1", "check_in", "minheim", NOW + 5, now=NOW + 5)  # a second badge
    with open_store(path) as a, open_store(path) as b:  # a restart; two hub processes
        assert not a.queue_feedback("bk-1", "release", "minheim", NOW + 60, now=NOW + 60)
        claimed = a.claim_feedback(NOW + 1, lease=30)
        assert [(i.booking_id, i.kind) for i in claimed] == [("bk-1", "release"), ("bk-1", "check_in")]
        assert b.claim_feedback(NOW + 2, lease=30) == []  # claimed by a: not sent twice at once
        a.feedback_retry("bk-1", "release", "HTTP 503", next_try=NOW + 10)
        a.feedback_delivered("bk-1", "check_in", now=NOW + 3)
        assert b.next_feedback_due() == NOW + 10
        assert [i.booking_id for i in b.claim_feedback(NOW + 10, lease=30)] == ["bk-1"]
        b.feedback_failed("bk-1", "release", "HTTP 404", now=NOW + 11)
        row = a.get_feedback("bk-1", "release")
        assert row is not None and (row.state, row.attempts, row.last_error) == ("failed", 2, "HTTP 404")
        assert [(i.kind, i.state) for i in a.feedback_backlog()] == [("release", "failed")]
        assert a.next_feedback_due() is None
        assert a.purge_feedback(NOW + 1) == 2 and a.feedback_backlog() == []


def test_the_platform_queue_refuses_an_unknown_kind_or_an_empty_booking_id(store_url: str) -> None:
    with open_store(store_url) as s:
        with pytest.raises(ValueError, match="kind"):
            s.queue_feedback("bk-1", "cancel", "minheim", NOW, now=NOW)
        with pytest.raises(ValueError, match="empty"):
            s.queue_feedback("", "check_in", "minheim", NOW, now=NOW)
        assert s.feedback_backlog() == []


def test_a_sites_clean_since_is_forgotten_when_the_hub_starts(store_url: str) -> None:
    with open_store(store_url) as s:
        assert s.site_watch("minheim") == (None, None)
        s.set_site_watch("minheim", NOW, "boot-1")
        assert s.site_watch("minheim") == (NOW, "boot-1")
        s.forget_clean_since()
        assert s.site_watch("minheim") == (None, "boot-1")
