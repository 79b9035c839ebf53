"""Fuzzing the booking platform's answers: random and mutated page bodies, served over real
HTTP by the booking fake (its ``raw`` fault), into hub.booking.rest.RestAdapter. The only
outcomes allowed: SyncError for a page that is not a page, or exactly the items that are
valid bookings (invalid ones skipped), each one as the platform wrote it. Never a crash,
never a booking the body did not hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.booking import HttpPolicy, RestAdapter
from hub.booking.base import PlatformBooking, from_wire
from hub.errors import SyncError
from testkit.booking_fake import BookingPlatform
from tests.strategies import struct
from wire import messages as m
from wire.errors import WireError

from .mutate import JSON_VALUES, mutated

FAST = HttpPolicy(connect_timeout=2, read_timeout=5, retries=0, backoff_factor=0, backoff_max=0)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def platform() -> Iterator[BookingPlatform]:
    with BookingPlatform() as p:  # no bookings of its own: a next page is empty
        yield p


@pytest.fixture(scope="module")
def adapter(platform: BookingPlatform) -> Iterator[RestAdapter]:
    with RestAdapter(platform.base_url, platform.token, policy=FAST, max_pages=3) as a:
        yield a


def _booking_doc(b: m.Booking) -> Any:
    return json.loads(m.encode(b))


ITEMS = st.one_of(
    struct(m.Booking).map(_booking_doc),
    struct(m.Booking).map(m.encode).flatmap(mutated).map(lambda raw: raw.decode("utf-8", "replace")),
    JSON_VALUES,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "page", "mutated_page"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    items = draw(st.lists(ITEMS, max_size=6))
    page = json.dumps({"items": items, "next_page_token": draw(st.none() | st.just("t1"))}).encode()
    return page if kind == "page" else draw(mutated(page))


def expected(body: bytes) -> dict[str, PlatformBooking] | None:
    """What a correct adapter returns for this first page (None: it must fail), assuming the
    next page, if any, is empty."""
    try:
        page = m.decode(body, m.BookingPage)
    except WireError:
        return None
    out: dict[str, PlatformBooking] = {}
    for raw in page.items:
        try:
            b = from_wire(m.decode(bytes(raw), m.Booking), "rest")
        except (WireError, ValueError):
            continue
        old = out.get(b.id)
        # The newest (full precision); on a tie the later, unless it undoes a cancellation.
        if old is None or b.updated_at > old.updated_at or (
                b.updated_at == old.updated_at and (old.status != "cancelled" or b.status == "cancelled")):
            out[b.id] = b
    return out


@FUZZ
@given(body=bodies())
def test_any_page_body_gives_sync_error_or_exactly_its_valid_bookings(
    platform: BookingPlatform, adapter: RestAdapter, body: bytes
) -> None:
    platform.fail("raw", times=1, body=body)
    try:
        result = adapter.fetch(None)
    except SyncError:
        return  # the caller keeps its last good bookings
    want = expected(body)
    assert want is not None, "a body that is not a bookings page was accepted"
    got = {b.id: b for b in result.bookings}
    assert set(got) == set(want), "a booking appeared or vanished"
    for bid, b in got.items():
        w = want[bid]
        assert (b.resource_id, b.member_id, b.start, b.end, b.status, b.pin) == \
            (w.resource_id, w.member_id, w.start, w.end, w.status, w.pin)
    assert len(result.skipped) + len(got) <= len(json.loads(body)["items"])
