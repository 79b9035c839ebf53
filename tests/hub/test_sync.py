"""The booking sync against the real HTTP fake of the platform: changes reach the store,
a failing platform leaves every booking as it was, a complete result cancels what vanished."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import config
from hub.booking import HttpPolicy, PlatformBooking
from hub.config import HubConfig
from hub.store import Store, open_store
from hub.sync import BookingSync
from testkit.booking_fake import BookingPlatform, iso
from tests.hub.test_hub_config import write_hub_config

FAST = HttpPolicy(connect_timeout=2, read_timeout=5, retries=1, backoff_factor=0.001, backoff_max=0.01)
H = dt.timedelta(hours=1)


def rest_config(root: Path, platform: BookingPlatform) -> HubConfig:
    path = write_hub_config(root, booking=f"""
        [booking]
        adapter = "rest"
        base_url = "{platform.base_url}"
        token_file = "secrets/platform-token"
        """)
    token = root / "secrets" / "platform-token"
    token.write_text(platform.token + "\n")
    token.chmod(0o600)
    return config.load(path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "hub.sqlite3")
    yield s
    s.close()


@pytest.fixture
def rest(tmp_path: Path, booking_platform: BookingPlatform, store: Store) -> Iterator[BookingSync]:
    cfg = rest_config(tmp_path, booking_platform)
    store.sync_sites(cfg.sites)
    with BookingSync(cfg, store, policy=FAST) as sync:
        yield sync


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_new_changed_and_unchanged_bookings_reach_the_store(
    rest: BookingSync, store: Store, booking_platform: BookingPlatform
) -> None:
    t = now()
    booking_platform.add("b1", "res-cowork", "m1", t + H, t + 3 * H)
    booking_platform.add("b2", "res-meeting", "m2", t + 2 * H, t + 4 * H, pin="4821")
    booking_platform.add("b3", "res-elsewhere", "m3", t, t + H)
    lines: list[str] = []
    report = rest.run_once(time.time(), progress=lines.append)
    assert report.ok and report.seen == 3 and report.pages == 1
    assert sorted(report.changed) == ["b1", "b2", "b3"] and report.sites == {"minheim"}
    assert any(line.startswith("page 1: HTTP 200") for line in lines)
    b2 = store.get_booking("b2")
    assert b2 is not None and (b2.member_id, b2.pin, b2.status) == ("m2", "4821", "confirmed")
    assert store.get_sync_state("rest").cursor is not None

    booking_platform.cancel("b1")
    report = rest.run_once(time.time())
    assert report.ok and report.changed == ("b1",) and report.sites == {"minheim"}
    assert store.get_booking("b1").status == "cancelled"  # type: ignore[union-attr]

    report = rest.run_once(time.time())  # the overlap re-reads b1, which has not changed
    assert report.ok and report.changed == () and report.sites == frozenset()


def test_a_failing_platform_leaves_the_bookings_and_counts_the_failures(
    rest: BookingSync, store: Store, booking_platform: BookingPlatform
) -> None:
    t = now()
    booking_platform.add("b1", "res-cowork", "m1", t + H, t + 3 * H)
    assert rest.run_once(time.time()).ok
    before = store.bookings_for_site_window("minheim", 0, 2**40)
    cursor = store.get_sync_state("rest").cursor

    booking_platform.cancel("b1")
    booking_platform.fail("status", times=None, status=503)
    first = rest.run_once(time.time())
    assert not first.ok and "503" in (first.error or "") and first.failures == 1
    booking_platform.heal()
    booking_platform.fail("garbage", times=None)
    second = rest.run_once(time.time())
    assert not second.ok and second.failures == 2 and second.changed == ()
    assert store.bookings_for_site_window("minheim", 0, 2**40) == before
    state = store.get_sync_state("rest")
    assert (state.failures, state.cursor) == (2, cursor) and state.last_error == second.error

    booking_platform.heal()
    healed = rest.run_once(time.time())
    assert healed.ok and healed.changed == ("b1",)
    assert store.get_sync_state("rest").failures == 0


def test_the_first_full_listing_cancels_bookings_the_platform_no_longer_has(
    rest: BookingSync, store: Store, booking_platform: BookingPlatform
) -> None:
    t = int(time.time())
    store.upsert_bookings([PlatformBooking("ghost", "res-cowork", "m1", t + 3600, t + 7200, "confirmed", t - 60,
                                           None, "rest")])
    booking_platform.add("b1", "res-cowork", "m1", now() + H, now() + 2 * H)
    report = rest.run_once(time.time())
    assert report.ok and report.complete and set(report.changed) == {"b1", "ghost"}
    assert store.get_booking("ghost").status == "cancelled"  # type: ignore[union-attr]


def test_a_webhook_booking_is_stored_at_once_and_an_older_one_ignored(
    rest: BookingSync, store: Store
) -> None:
    t = int(time.time())
    b = PlatformBooking("w1", "res-meeting", "m1", t + 3600, t + 7200, "confirmed", t, None, "webhook")
    report = rest.apply_webhook(b, t)
    assert report.ok and report.changed == ("w1",) and report.sites == {"minheim"}
    older = PlatformBooking("w1", "res-meeting", "m1", t, t + 60, "cancelled", t - 100, None, "webhook")
    assert rest.apply_webhook(older, t).changed == ()
    assert store.get_booking("w1").status == "confirmed"  # type: ignore[union-attr]


# --- ICS: complete results -----------------------------------------------------------------------


def ics(*events: tuple[str, dt.datetime, str]) -> str:
    body = "".join(
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + H:%Y%m%dT%H%M%SZ}\r\n"
        f"ORGANIZER:mailto:{who}\r\nEND:VEVENT\r\n"
        for uid, start, who in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Torwart tests//EN\r\n{body}END:VCALENDAR\r\n"


def test_a_complete_ics_result_cancels_a_vanished_booking(
    tmp_path: Path, booking_platform: BookingPlatform, store: Store
) -> None:
    t = now() + 2 * H
    url = booking_platform.put_ics("res-cowork", ics(("a@x", t, "anna@example.org"), ("b@x", t + H,
                                                                                        "anna@example.org")))
    meeting = booking_platform.put_ics("res-meeting", ics(("c@x", t, "stranger@example.org")))
    path = write_hub_config(tmp_path, booking='[booking]\nadapter = "ics"\n', sites=f"""
        [[sites]]
        id = "minheim"
        cred_key_file = "keys/minheim.key"
        [[sites.rooms]]
        id = "cowork"
        resources = ["res-cowork"]
        doors = ["main"]
        ics_url = "{url}"
        [[sites.rooms]]
        id = "meeting"
        resources = ["res-meeting"]
        doors = ["main"]
        ics_url = "{meeting}"
        """)
    cfg = config.load(path)
    store.sync_sites(cfg.sites)
    store.add_member("m-anna", "Anna", "Anna@Example.org")
    with BookingSync(cfg, store, policy=FAST) as sync:
        lines: list[str] = []
        first = sync.run_once(time.time(), progress=lines.append)
        assert first.ok and first.complete and first.pages == 2 and first.seen == 2
        assert [ln.split(":")[0] for ln in lines[1:]] == ["feed 1", "feed 2"]
        assert len(first.changed) == 2 and first.sites == {"minheim"}
        assert [s.id for s in first.skipped] == ["c@x"]  # nobody the hub knows
        assert {b.member_id for b in store.bookings_for_site_window("minheim", 0, 2**40)} == {"m-anna"}

        booking_platform.put_ics("res-cowork", ics(("a@x", t, "anna@example.org")))
        second = sync.run_once(time.time())
        assert second.ok and len(second.changed) == 1 and second.changed[0].startswith("res-cowork/b@x/")
        by_id = {b.id: b.status for b in store.bookings_for_site_window("minheim", 0, 2**40)}
        assert sorted(by_id.values()) == ["cancelled", "confirmed"] and by_id[second.changed[0]] == "cancelled"

        booking_platform.fail("status", times=None, status=500)
        assert not sync.run_once(time.time()).ok  # a broken feed cancels nothing
        assert {b.id: b.status for b in store.bookings_for_site_window("minheim", 0, 2**40)} == by_id


def test_a_synced_booking_never_replaces_a_later_version_at_full_precision(
    rest: BookingSync, store: Store, booking_platform: BookingPlatform
) -> None:
    t = now()
    cancelled_at = t + dt.timedelta(milliseconds=500)
    # The hub holds the cancellation (e.g. pushed by webhook) from later in the same second.
    store.upsert_bookings([PlatformBooking(id="b1", resource_id="res-cowork", member_id="m1",
                                           start=int((t + H).timestamp()), end=int((t + 2 * H).timestamp()),
                                           status="cancelled", updated_at=cancelled_at.timestamp(), pin=None,
                                           source="rest")])
    doc = {"id": "b1", "resource_id": "res-cowork", "member_id": "m1", "start": iso(t + H), "end": iso(t + 2 * H),
           "status": "confirmed", "pin": None}
    for version in (t + dt.timedelta(milliseconds=200), cancelled_at):  # earlier in the second; a tie
        booking_platform.put({**doc, "updated_at": iso(version)}, touch=False)
        assert rest.run_once(time.time()).ok
        b = store.get_booking("b1")
        assert b is not None and (b.status, b.updated_at) == ("cancelled", cancelled_at.timestamp()), version
    booking_platform.put({**doc, "updated_at": iso(cancelled_at + dt.timedelta(microseconds=1))}, touch=False)
    assert rest.run_once(time.time()).ok
    assert store.get_booking("b1").status == "confirmed"  # type: ignore[union-attr]
