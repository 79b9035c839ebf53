"""The REST adapter against the real HTTP fake of the booking platform (PROTOCOL.md §5)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
import time
from collections.abc import Iterator

import pytest

from hub.booking import BookingAdapter, HttpPolicy, RestAdapter, WriteFailed
from hub.booking.base import unix
from hub.booking.rest import retry_after
from hub.errors import HubError, SyncError
from testkit.booking_fake import BookingPlatform, iso
from testkit.util import free_port

T0 = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
FAST = HttpPolicy(connect_timeout=2, read_timeout=5, retries=2, backoff_factor=0.001, backoff_max=0.01,
                  max_retry_after=5)
SHORT_READ = HttpPolicy(connect_timeout=2, read_timeout=0.3, retries=2, backoff_factor=0.001, backoff_max=0.01)


@pytest.fixture
def rest(booking_platform: BookingPlatform) -> Iterator[RestAdapter]:
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=FAST) as adapter:
        yield adapter


def _fill(p: BookingPlatform, n: int) -> None:
    for i in range(n):
        p.add(f"b{i:03d}", "room-1", f"m{i}", T0 + dt.timedelta(hours=i), T0 + dt.timedelta(hours=i + 1))


def _at(t: int) -> str:
    return iso(dt.datetime.fromtimestamp(t, dt.UTC))


def _raw(id: str, updated_at: str, **changes: object) -> dict[str, object]:
    b: dict[str, object] = {"id": id, "resource_id": "room-1", "member_id": "m1", "start": iso(T0),
                            "end": iso(T0 + dt.timedelta(hours=1)), "status": "confirmed",
                            "updated_at": updated_at, "pin": None}
    b.update(changes)
    return b


def test_the_rest_adapter_is_a_booking_adapter(rest: RestAdapter) -> None:
    adapter: BookingAdapter = rest
    assert adapter.supports_write


# --- reading --------------------------------------------------------------------------------


def test_fetch_follows_next_page_token_through_every_page(booking_platform: BookingPlatform,
                                                          rest: RestAdapter) -> None:
    booking_platform.page_size = 3
    _fill(booking_platform, 10)
    result = rest.fetch(None)
    assert result.pages == 4
    assert [b.id for b in result.bookings] == [f"b{i:03d}" for i in range(10)]
    assert result.complete and result.skipped == ()
    assert result.cursor == math.floor(max(b.updated_at for b in result.bookings))  # whole seconds, at or after
    first = result.bookings[0]
    assert (first.resource_id, first.member_id, first.status, first.pin, first.source) == \
        ("room-1", "m0", "confirmed", None, "rest")
    assert (first.start, first.end) == (unix(T0), unix(T0) + 3600)
    calls = booking_platform.listing_calls()
    assert len(calls) == 4
    assert "page_token" not in calls[0].query and all("page_token" in c.query for c in calls[1:])
    assert {c.auth for c in calls} == {f"Bearer {booking_platform.token}"}


def test_incremental_sync_asks_with_an_overlap_and_returns_changes_and_cancellations(
        booking_platform: BookingPlatform, rest: RestAdapter) -> None:
    now = int(time.time())
    booking_platform.put(_raw("old", _at(now - 1000)), touch=False)
    booking_platform.put(_raw("recent", _at(now - 100)), touch=False)
    booking_platform.put(_raw("mark", _at(now - 10)), touch=False)
    first = rest.fetch(None)
    assert first.cursor == now - 10

    booking_platform.cancel("old")
    second = rest.fetch(first.cursor)

    assert booking_platform.listing_calls()[-1].query["updated_since"] == [_at(now - 10 - 120)]
    got = {b.id: b for b in second.bookings}
    # "recent" and "mark" come again because of the overlap; "old" only because it changed.
    assert set(got) == {"recent", "mark", "old"}
    assert got["old"].status == "cancelled"
    assert not second.complete
    assert second.cursor is not None and second.cursor >= now


def test_incremental_sync_without_changes_keeps_the_cursor(booking_platform: BookingPlatform,
                                                           rest: RestAdapter) -> None:
    now = int(time.time())
    booking_platform.put(_raw("old", _at(now - 1000)), touch=False)
    result = rest.fetch(now - 500)
    assert (result.bookings, result.cursor) == ((), now - 500)


def test_a_booking_listed_twice_is_kept_once_in_its_newest_version(booking_platform: BookingPlatform,
                                                                   rest: RestAdapter) -> None:
    booking_platform.page_size = 2
    # Same id three times (as when a booking changes while the hub pages through): the newest
    # is 10:00Z; the one listed last is older (10:30+01:00 = 09:30Z) but sorts after it.
    with booking_platform.lock:
        booking_platform.bookings["v1"] = _raw("dup", "2026-11-20T09:00:00Z", member_id="m-first")
        booking_platform.bookings["v2"] = _raw("dup", "2026-11-20T10:00:00Z", status="cancelled")
        booking_platform.bookings["v3"] = _raw("dup", "2026-11-20T10:30:00+01:00", member_id="m-stale")
        booking_platform.bookings["other"] = _raw("other", "2026-11-20T08:00:00Z")
    result = rest.fetch(None)
    assert result.pages == 2
    assert [b.id for b in result.bookings] == ["other", "dup"]
    dup = result.bookings[1]
    assert (dup.status, dup.member_id, dup.updated_at) == \
        ("cancelled", "m1", unix(dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)))


def test_a_cursor_never_runs_ahead_of_the_hub_clock(booking_platform: BookingPlatform) -> None:
    now = int(time.time())
    booking_platform.put(_raw("future", _at(now + 3600)), touch=False)
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=FAST,
                     clock=lambda: float(now)) as adapter:
        assert adapter.fetch(None).cursor == now


def test_a_bad_item_is_logged_with_its_id_and_skipped_while_the_good_ones_are_returned(
        booking_platform: BookingPlatform, rest: RestAdapter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hub.booking.rest")
    _fill(booking_platform, 2)
    booking_platform.put(_raw("bad-type", "", member_id=17))
    missing = _raw("bad-missing", "")
    del missing["end"]
    booking_platform.put(missing)
    booking_platform.put(_raw("bad-naive", "", start="2026-11-23T08:00:00"))
    booking_platform.put(_raw("bad-pin", "", pin="12ab"))
    booking_platform.put({"resource_id": "room-1"})
    result = rest.fetch(None)
    assert result.pages == 1
    assert [b.id for b in result.bookings] == ["b000", "b001"]
    reasons = {s.id: s.reason for s in result.skipped}
    assert set(reasons) == {"bad-type", "bad-missing", "bad-naive", "bad-pin", None}
    assert "$.member_id" in reasons["bad-type"]
    assert "`end`" in reasons["bad-missing"]
    assert "$.start" in reasons["bad-naive"]
    assert "$.pin" in reasons["bad-pin"] and "12ab" not in reasons["bad-pin"]
    logged = [r.getMessage() for r in caplog.records]
    for bid in ("bad-type", "bad-missing", "bad-naive", "bad-pin", "(no id)"):
        assert any(bid in m for m in logged), bid


# --- failures -------------------------------------------------------------------------------


def test_server_errors_are_retried_within_one_fetch(booking_platform: BookingPlatform,
                                                    rest: RestAdapter) -> None:
    _fill(booking_platform, 2)
    booking_platform.fail("status", times=2, status=500)
    assert [b.id for b in rest.fetch(None).bookings] == ["b000", "b001"]
    assert len(booking_platform.listing_calls()) == 3


def test_a_persistent_server_error_raises_sync_error(booking_platform: BookingPlatform, rest: RestAdapter) -> None:
    booking_platform.fail("status", times=None, status=502)
    with pytest.raises(SyncError, match="HTTP 502 after retries"):
        rest.fetch(None)
    assert len(booking_platform.listing_calls()) == FAST.retries + 1


def test_a_timeout_is_retried_and_the_fetch_recovers(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 1)
    booking_platform.fail("timeout", times=1, seconds=3)
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=SHORT_READ) as adapter:
        assert [b.id for b in adapter.fetch(None).bookings] == ["b000"]
    assert len(booking_platform.listing_calls()) == 2


def test_persistent_timeouts_raise_sync_error_after_the_retries(booking_platform: BookingPlatform) -> None:
    booking_platform.fail("timeout", times=None, seconds=3)
    started = time.monotonic()
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=SHORT_READ) as adapter, \
            pytest.raises(SyncError, match="timed out"):
        adapter.fetch(None)
    assert time.monotonic() - started < 2.5  # bounded by the client's timeouts, not the server
    assert len(booking_platform.listing_calls()) == SHORT_READ.retries + 1


def test_no_platform_listening_raises_sync_error() -> None:
    with RestAdapter(f"http://127.0.0.1:{free_port()}", "some-token", policy=FAST) as adapter, \
            pytest.raises(SyncError, match="no answer"):
        adapter.fetch(None)


@pytest.mark.parametrize("fault", ["garbage", "truncated", "wrong_types"])
def test_a_broken_page_raises_sync_error(booking_platform: BookingPlatform, rest: RestAdapter, fault: str) -> None:
    _fill(booking_platform, 3)
    booking_platform.fail(fault)
    with pytest.raises(SyncError, match="page 1 is not a bookings page"):
        rest.fetch(None)


def test_a_page_loop_raises_sync_error(booking_platform: BookingPlatform, rest: RestAdapter) -> None:
    booking_platform.page_size = 1
    _fill(booking_platform, 3)
    booking_platform.fail("page_loop", times=None)
    with pytest.raises(SyncError, match="page loop"):
        rest.fetch(None)


def test_more_pages_than_allowed_raise_sync_error(booking_platform: BookingPlatform) -> None:
    booking_platform.page_size = 1
    _fill(booking_platform, 5)
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=FAST, max_pages=3) as adapter, \
            pytest.raises(SyncError, match="more than 3 pages"):
        adapter.fetch(None)


def test_a_rate_limit_is_retried_after_the_time_the_platform_asks_for(booking_platform: BookingPlatform,
                                                                       rest: RestAdapter) -> None:
    _fill(booking_platform, 1)
    booking_platform.fail("rate_limit", retry_after=1)
    started = time.monotonic()
    assert [b.id for b in rest.fetch(None).bookings] == ["b000"]
    assert time.monotonic() - started >= 0.9  # the backoff alone would be milliseconds
    assert len(booking_platform.listing_calls()) == 2


def test_a_huge_retry_after_is_cut_so_a_sync_stays_bounded(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 1)
    booking_platform.fail("rate_limit", retry_after=3600)
    policy = HttpPolicy(retries=2, backoff_factor=0.001, max_retry_after=0.2)
    started = time.monotonic()
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=policy) as adapter:
        assert len(adapter.fetch(None).bookings) == 1
    assert time.monotonic() - started < 5


def test_a_wrong_token_raises_sync_error_about_the_token(booking_platform: BookingPlatform,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(8)
    with RestAdapter(booking_platform.base_url, wrong, policy=FAST) as adapter, \
            pytest.raises(SyncError, match="refused the API token") as err:
        adapter.fetch(None)
    assert wrong not in str(err.value) and wrong not in caplog.text
    assert len(booking_platform.listing_calls()) == 1  # 401 is not retried


def test_the_token_never_shows_in_repr(rest: RestAdapter, booking_platform: BookingPlatform) -> None:
    assert booking_platform.token not in repr(rest)
    assert "redacted" in repr(rest)


def test_a_malformed_token_is_refused_without_echoing_it(booking_platform: BookingPlatform) -> None:
    with pytest.raises(HubError, match="token") as err:
        RestAdapter(booking_platform.base_url, "abc def\n")
    assert "abc" not in str(err.value)


# --- writing --------------------------------------------------------------------------------


def test_check_in_and_release_reach_the_platform_with_iso_times(booking_platform: BookingPlatform,
                                                                rest: RestAdapter) -> None:
    _fill(booking_platform, 1)
    rest.check_in("b000", unix(T0) + 60)
    rest.release("b000")
    assert booking_platform.checkins == [("b000", {"at": "2026-11-23T08:01:00Z"})]
    assert booking_platform.releases == [("b000", {"reason": "no_show"})]
    assert booking_platform.bookings["b000"]["status"] == "cancelled"


def test_check_in_of_an_unknown_booking_raises_sync_error(rest: RestAdapter) -> None:
    with pytest.raises(SyncError, match="does not know this booking"):
        rest.check_in("nope", unix(T0))
    with pytest.raises(SyncError, match="HTTP 404"):
        rest.release("nope")


@pytest.mark.parametrize(("fault", "params", "permanent", "retry_after"), [
    ("status", {"status": 503}, False, None),
    ("status", {"status": 500}, False, None),
    ("status", {"status": 408}, False, None),
    ("rate_limit", {"retry_after": 7}, False, 7.0),
    ("status", {"status": 400}, True, None),
    ("status", {"status": 409}, True, None),
    ("timeout", {"seconds": 2}, False, None),
])
def test_a_refused_write_says_whether_trying_again_can_help(
    booking_platform: BookingPlatform, fault: str, params: dict[str, object], permanent: bool,
    retry_after: float | None,
) -> None:
    _fill(booking_platform, 1)
    booking_platform.fail(fault, 1, on="check-in", **params)
    policy = HttpPolicy(connect_timeout=1, read_timeout=1, retries=0)  # the hub's delivery worker retries
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=policy) as adapter, \
            pytest.raises(WriteFailed) as err:
        adapter.check_in("b000", unix(T0))
    assert (err.value.permanent, err.value.retry_after) == (permanent, retry_after)
    assert len(booking_platform.write_calls("check-in")) == 1 and booking_platform.checkins == []


def test_a_write_with_a_refused_token_or_for_an_unknown_booking(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 1)
    with RestAdapter(booking_platform.base_url, "wrong", policy=FAST) as adapter, pytest.raises(WriteFailed) as err:
        adapter.check_in("b000", unix(T0))
    assert not err.value.permanent and err.value.status == 401  # fix the token file, and it goes through
    with RestAdapter(booking_platform.base_url, booking_platform.token, policy=FAST) as adapter, \
            pytest.raises(WriteFailed) as err:
        adapter.release("nope")
    assert err.value.permanent and err.value.status == 404


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after({"Retry-After": "120"}, now) == 120.0
    assert retry_after({"retry-after": "Fri, 15 Jan 2027 08:02:00 GMT"}, now) == 120.0
    assert retry_after({"Retry-After": "soon"}, now) is None
    assert retry_after({"Retry-After": "Fri, 15 Jan 2027 08:00:00 GMT"}, now + 86400) == 0.0  # in the past
    assert retry_after({}, now) is None


def test_release_with_a_wrong_token_raises_sync_error(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 1)
    with RestAdapter(booking_platform.base_url, "wrong", policy=FAST) as adapter, \
            pytest.raises(SyncError, match="token"):
        adapter.release("b000")
    assert booking_platform.releases == []
