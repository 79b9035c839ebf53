"""The ICS adapter against per-room feeds served by the real HTTP fake."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest

from hub.booking import BookingAdapter, HttpPolicy, IcsAdapter, PlatformBooking, UnsupportedOperation
from hub.booking.base import unix
from hub.errors import SyncError
from testkit.booking_fake import BookingPlatform

NOW = dt.datetime(2026, 11, 8, 12, tzinfo=dt.UTC)  # a Sunday
FAST = HttpPolicy(connect_timeout=2, read_timeout=5, retries=2, backoff_factor=0.001, backoff_max=0.01)
MEMBERS = {"anna@example.org": "m-anna", "carl@example.org": "m-carl", "bob@example.org": "m-bob"}

# Mondays 09:00-12:00 Berlin from 2 Nov, six times; 16 Nov excluded, 23 Nov cancelled by an
# override that names nobody (as calendar tools write it).
ROOM_1 = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Torwart tests//EN
BEGIN:VEVENT
UID:weekly-1@torwart.test
DTSTAMP:20261101T100000Z
DTSTART;TZID=Europe/Berlin:20261102T090000
DTEND;TZID=Europe/Berlin:20261102T120000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20261116T090000
SUMMARY:Coworking
ORGANIZER:mailto:bob@example.org
ATTENDEE;CN=Anna;PARTSTAT=ACCEPTED:mailto:Anna@Example.org
ATTENDEE;CN=Carl:mailto:carl@example.org
ATTENDEE;CUTYPE=ROOM;CN=Saal:mailto:saal@gemeinde.example
ATTENDEE;PARTSTAT=DECLINED:mailto:dora@example.org
ATTENDEE:mailto:mallory@example.org
END:VEVENT
BEGIN:VEVENT
UID:weekly-1@torwart.test
DTSTAMP:20261105T100000Z
RECURRENCE-ID;TZID=Europe/Berlin:20261123T090000
DTSTART;TZID=Europe/Berlin:20261123T090000
DTEND;TZID=Europe/Berlin:20261123T120000
STATUS:CANCELLED
END:VEVENT
BEGIN:VEVENT
UID:cancelled-1@torwart.test
DTSTAMP:20261101T100000Z
LAST-MODIFIED:20261103T100000Z
DTSTART:20261110T140000Z
DTEND:20261110T160000Z
STATUS:CANCELLED
ORGANIZER:mailto:bob@example.org
END:VEVENT
BEGIN:VEVENT
UID:allday-1@torwart.test
DTSTAMP:20261101T100000Z
DTSTART;VALUE=DATE:20261112
DTEND;VALUE=DATE:20261113
ORGANIZER;CN=Carl:mailto:carl@example.org
ATTENDEE;CUTYPE=RESOURCE:mailto:beamer@gemeinde.example
END:VEVENT
BEGIN:VEVENT
UID:later-1@torwart.test
DTSTAMP:20261101T100000Z
DTSTART:20261224T100000Z
DTEND:20261224T110000Z
ORGANIZER:mailto:anna@example.org
END:VEVENT
END:VCALENDAR
"""

ROOM_2 = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Torwart tests//EN
BEGIN:VEVENT
UID:floating-1@torwart.test
DTSTAMP:20261101T100000Z
DTSTART:20261111T100000
DTEND:20261111T113000
ORGANIZER:mailto:anna@example.org
END:VEVENT
BEGIN:VEVENT
UID:stranger-1@torwart.test
DTSTAMP:20261101T100000Z
DTSTART:20261111T140000Z
DTEND:20261111T150000Z
ORGANIZER:mailto:mallory@example.org
END:VEVENT
END:VCALENDAR
"""


def _utc(year: int, month: int, day: int, hour: int = 0) -> int:
    return unix(dt.datetime(year, month, day, hour, tzinfo=dt.UTC))


class Directory:
    """A member directory by e-mail address that remembers who was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, email: str) -> str | None:
        self.asked.append(email)
        return MEMBERS.get(email)


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def ics(booking_platform: BookingPlatform, directory: Directory) -> Iterator[IcsAdapter]:
    feeds = [("room-1", booking_platform.put_ics("room-1", ROOM_1)),
             ("room-2", booking_platform.put_ics("room-2", ROOM_2))]
    with IcsAdapter(feeds, directory, horizon_days=21, policy=FAST, clock=NOW.timestamp) as adapter:
        yield adapter


def _by_id(bookings: tuple[PlatformBooking, ...]) -> dict[str, PlatformBooking]:
    return {b.id: b for b in bookings}


def test_a_weekly_event_with_an_exdate_expands_to_the_occurrences_in_the_window(ics: IcsAdapter) -> None:
    got = _by_id(ics.fetch(None).bookings)
    anna = sorted((b for b in got.values() if b.member_id == "m-anna" and b.resource_id == "room-1"),
                  key=lambda b: b.start)
    # 2 Nov lies before the window (now - 1 day), 16 Nov is an EXDATE, 30 Nov and later
    # lie beyond the horizon; 23 Nov is there, cancelled.
    assert [(b.id, b.start, b.end, b.status) for b in anna] == [
        ("room-1/weekly-1@torwart.test/20261109T080000Z/m-anna", _utc(2026, 11, 9, 8), _utc(2026, 11, 9, 11),
         "confirmed"),
        ("room-1/weekly-1@torwart.test/20261123T080000Z/m-anna", _utc(2026, 11, 23, 8), _utc(2026, 11, 23, 11),
         "cancelled"),
    ]
    assert got["room-1/weekly-1@torwart.test/20261109T080000Z/m-anna"].updated_at == _utc(2026, 11, 1, 10)
    assert got["room-1/weekly-1@torwart.test/20261123T080000Z/m-anna"].updated_at == _utc(2026, 11, 5, 10)


def test_each_known_attendee_gets_a_booking_and_rooms_declined_and_unknown_people_do_not(
        ics: IcsAdapter, directory: Directory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = ics.fetch(None)
    weekly = {(b.member_id, b.start) for b in result.bookings if "weekly-1" in b.id}
    assert weekly == {(m, t) for m in ("m-anna", "m-carl") for t in (_utc(2026, 11, 9, 8), _utc(2026, 11, 23, 8))}
    # Addresses are asked for in lower case; the room and the one who declined are not asked.
    assert "anna@example.org" in directory.asked
    assert not {"saal@gemeinde.example", "dora@example.org", "beamer@gemeinde.example"} & set(directory.asked)
    assert {s.id for s in result.skipped} == {"weekly-1@torwart.test", "stranger-1@torwart.test"}
    assert "weekly-1@torwart.test" in caplog.text and "stranger-1@torwart.test" in caplog.text
    assert "mallory" not in caplog.text and "@example.org" not in caplog.text
    assert all("mallory" not in s.reason for s in result.skipped)


def test_a_cancelled_event_gives_a_cancelled_booking_for_its_organizer(ics: IcsAdapter) -> None:
    got = _by_id(ics.fetch(None).bookings)
    b = got["room-1/cancelled-1@torwart.test/m-bob"]
    assert (b.status, b.start, b.end, b.updated_at) == \
        ("cancelled", _utc(2026, 11, 10, 14), _utc(2026, 11, 10, 16), _utc(2026, 11, 3, 10))


def test_all_day_and_floating_times_are_read_in_the_configured_timezone(ics: IcsAdapter) -> None:
    got = _by_id(ics.fetch(None).bookings)
    allday = got["room-1/allday-1@torwart.test/m-carl"]
    assert (allday.start, allday.end) == (_utc(2026, 11, 11, 23), _utc(2026, 11, 12, 23))
    floating = got["room-2/floating-1@torwart.test/m-anna"]
    assert (floating.resource_id, floating.start, floating.end) == \
        ("room-2", _utc(2026, 11, 11, 9), _utc(2026, 11, 11, 10) + 1800)


def test_a_sync_returns_the_whole_window_with_ids_that_stay_the_same(ics: IcsAdapter) -> None:
    first, second = ics.fetch(None), ics.fetch(12345)
    assert [b.id for b in first.bookings] == [b.id for b in second.bookings]
    assert len(first.bookings) == 7
    assert not any("later-1" in b.id for b in first.bookings)
    assert (first.complete, first.cursor, first.pages) == (True, None, 2)
    assert first.window == (unix(NOW) - 86400, unix(NOW) + 21 * 86400)
    assert {b.source for b in first.bookings} == {"ics"}


def test_an_ics_feed_cannot_be_written_to(ics: IcsAdapter) -> None:
    adapter: BookingAdapter = ics
    assert not adapter.supports_write
    with pytest.raises(UnsupportedOperation, match="read-only"):
        adapter.check_in("x", unix(NOW))
    with pytest.raises(UnsupportedOperation, match="read-only"):
        adapter.release("x")


# --- failures -------------------------------------------------------------------------------

BROKEN = {
    "cut short": ROOM_2[: len(ROOM_2) // 2],
    "not a calendar": "<html><body>Wartungsarbeiten</body></html>",
    "broken time": ROOM_2.replace("DTSTART:20261111T100000", "DTSTART:tomorrow"),
    "broken rule": ROOM_2.replace("DTEND:20261111T113000", "DTEND:20261111T113000\nRRULE:FREQ=SOMETIMES"),
    "broken stamp": ROOM_2.replace("DTSTAMP:20261101T100000Z\nDTSTART:20261111T100000",
                                   "DTSTAMP:yesterday\nDTSTART:20261111T100000"),
}


@pytest.mark.parametrize("body", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_feed_fails_the_whole_sync_naming_the_room(booking_platform: BookingPlatform, ics: IcsAdapter,
                                                            body: str, caplog: pytest.LogCaptureFixture) -> None:
    booking_platform.put_ics("room-2", body)
    with pytest.raises(SyncError, match="feed of room-2") as err:
        ics.fetch(None)
    assert "@example.org" not in str(err.value)


@pytest.mark.parametrize("fault", ["garbage", "truncated"])
def test_a_garbled_answer_fails_the_sync(booking_platform: BookingPlatform, ics: IcsAdapter, fault: str) -> None:
    booking_platform.fail(fault)
    with pytest.raises(SyncError, match="feed of room-1 is not a usable calendar"):
        ics.fetch(None)


def test_a_missing_feed_fails_the_sync_naming_the_room(booking_platform: BookingPlatform,
                                                        directory: Directory) -> None:
    with IcsAdapter([("room-9", booking_platform.ics_url("room-9"))], directory, policy=FAST) as adapter, \
            pytest.raises(SyncError, match="feed of room-9: HTTP 404"):
        adapter.fetch(None)


def test_a_server_error_on_a_feed_is_retried(booking_platform: BookingPlatform, ics: IcsAdapter) -> None:
    booking_platform.fail("status", times=2, status=503)
    assert len(ics.fetch(None).bookings) == 7
    assert len(booking_platform.feed_calls()) == 4  # room-1 three times, room-2 once


def test_a_feed_url_with_a_secret_is_never_logged(booking_platform: BookingPlatform, directory: Directory,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-feed-key"
    url = booking_platform.put_ics("room-1", ROOM_1) + f"?key={secret}"
    policy = HttpPolicy(connect_timeout=2, read_timeout=0.3, retries=1, backoff_factor=0.001)
    booking_platform.fail("timeout", times=None, seconds=3)
    with IcsAdapter([("room-1", url)], directory, policy=policy, clock=NOW.timestamp) as adapter, \
            pytest.raises(SyncError, match="room-1") as err:
        adapter.fetch(None)
    assert secret not in str(err.value) and secret not in repr(adapter)
    assert "Retrying" in caplog.text  # urllib3 did log the retry, without the URL
    assert secret not in caplog.text
