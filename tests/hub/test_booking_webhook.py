"""The platform's signed push (PROTOCOL.md §5): signature over timestamp and body first,
the timestamp within 300 s of the hub's clock, then strict parsing."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest

from hub.booking import WebhookUnauthorized
from hub.booking import verify_and_parse as verify
from hub.booking.base import PlatformBooking, unix
from hub.booking.webhook import MAX_BODY_BYTES, signature
from hub.errors import WebhookError
from testkit.booking_fake import webhook_signature

SECRET = secrets.token_bytes(32)
T0 = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
BOOKING = {"id": "b-1", "resource_id": "room-1", "member_id": "m-anna", "start": "2026-11-23T09:00:00+01:00",
           "end": "2026-11-23T09:00:00Z", "status": "confirmed", "updated_at": "2026-11-20T10:00:00Z",
           "pin": "4821"}


NOW = 1_790_000_000


def _body(**changes: object) -> bytes:
    return json.dumps(dict(BOOKING, **changes)).encode()


def _sig(body: bytes, secret: bytes = SECRET, ts: int = NOW) -> str:
    return webhook_signature(body, secret, ts)


def verify_and_parse(body: bytes, sig: str | None, secret: bytes, ts: str | None = str(NOW),
                     now: float = NOW) -> PlatformBooking:
    return verify(body, sig, ts, secret, now=now).booking


def test_a_correctly_signed_booking_is_accepted() -> None:
    body = _body()
    b = verify_and_parse(body, _sig(body), SECRET)
    assert (b.id, b.resource_id, b.member_id, b.status, b.pin, b.source) == \
        ("b-1", "room-1", "m-anna", "confirmed", "4821", "webhook")
    assert (b.start, b.end) == (unix(T0), unix(T0) + 3600)
    assert b.updated_at == unix(dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC))
    # updated_at keeps its full precision: two versions within one second are ordered.
    frac = verify_and_parse(_body(updated_at="2026-11-20T10:00:00.250001Z"), _sig(_body(
        updated_at="2026-11-20T10:00:00.250001Z")), SECRET)
    assert frac.updated_at == dt.datetime(2026, 11, 20, 10, 0, 0, 250001, tzinfo=dt.UTC).timestamp() > b.updated_at
    assert "4821" not in repr(b)  # a pin is a door credential


def test_the_signature_helper_matches_the_platform_and_upper_case_hex_is_accepted() -> None:
    body = _body()
    assert signature(body, SECRET, NOW) == _sig(body)
    header = "sha256=" + signature(body, SECRET, NOW).removeprefix("sha256=").upper()
    assert verify_and_parse(body, header, SECRET).id == "b-1"


def test_a_tampered_body_is_refused() -> None:
    body = _body()
    header = _sig(body)
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        verify_and_parse(_body(member_id="m-mallory"), header, SECRET)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    body = _body()
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        verify_and_parse(body, _sig(body, secrets.token_bytes(32)), SECRET)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    with pytest.raises(WebhookUnauthorized, match="missing X-Torwart-Signature"):
        verify_and_parse(_body(), header, SECRET)


@pytest.mark.parametrize("header", [
    "sha256=" + "zz" * 32,  # not hex
    "sha256=" + "ab" * 31,  # too short
    "sha1=" + "ab" * 32,  # other algorithm
    "ab" * 32,  # no scheme
    "sha256=" + "ab" * 32 + "00",  # too long
])
def test_a_garbled_signature_is_refused(header: str) -> None:
    with pytest.raises(WebhookUnauthorized, match="not sha256= followed by 64 hex digits"):
        verify_and_parse(_body(), header, SECRET)


def test_an_empty_secret_refuses_everything() -> None:
    body = _body()
    with pytest.raises(WebhookUnauthorized, match="no webhook secret"):
        verify_and_parse(body, _sig(body, b""), b"")


def test_the_signature_covers_the_timestamp() -> None:
    body = _body()
    with pytest.raises(WebhookUnauthorized, match="does not match"):  # signed at another time
        verify_and_parse(body, _sig(body, ts=NOW - 1), SECRET)
    assert verify_and_parse(body, _sig(body, ts=NOW - 1), SECRET, ts=str(NOW - 1)).id == "b-1"


@pytest.mark.parametrize("ts", [None, "", "soon", "-5", "1.5", "1" * 13])
def test_a_missing_or_garbled_timestamp_is_refused(ts: str | None) -> None:
    body = _body()
    with pytest.raises(WebhookUnauthorized, match="X-Torwart-Timestamp"):
        verify_and_parse(body, _sig(body), SECRET, ts=ts)


@pytest.mark.parametrize(("skew", "ok"), [(-300, True), (300, True), (-301, False), (301, False), (-86400, False)])
def test_a_timestamp_more_than_five_minutes_from_the_hubs_clock_is_refused(skew: int, ok: bool) -> None:
    body, ts = _body(), NOW + skew
    if ok:
        assert verify(body, _sig(body, ts=ts), str(ts), SECRET, now=NOW).timestamp == ts
    else:
        with pytest.raises(WebhookUnauthorized, match="from the hub's clock"):
            verify(body, _sig(body, ts=ts), str(ts), SECRET, now=NOW)


def test_the_replay_key_is_the_signature_in_lower_case() -> None:
    body = _body()
    sig = _sig(body)
    push = verify(body, sig.upper().replace("SHA256=", "sha256="), str(NOW), SECRET, now=NOW)
    assert push.signature == sig.removeprefix("sha256=")


def test_an_oversized_body_is_refused_before_anything_else() -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    with pytest.raises(WebhookError, match="exceeds"):
        verify_and_parse(body, _sig(body), SECRET)


@pytest.mark.parametrize(("changes", "field"), [
    ({"member_id": 17}, "$.member_id"),
    ({"start": "2026-11-23T08:00:00"}, "$.start"),
    ({"status": "maybe"}, "$.status"),
    ({"pin": "12ab"}, "$.pin"),
])
def test_a_signed_but_malformed_booking_is_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    body = _body(**changes)
    with pytest.raises(WebhookError, match="malformed booking") as err:
        verify_and_parse(body, _sig(body), SECRET)
    assert field in str(err.value)
    assert "12ab" not in str(err.value)


def test_a_signed_booking_without_a_required_field_is_refused_naming_it() -> None:
    doc = dict(BOOKING)
    del doc["resource_id"]
    body = json.dumps(doc).encode()
    with pytest.raises(WebhookError, match="resource_id"):
        verify_and_parse(body, _sig(body), SECRET)


def test_a_signed_body_that_is_not_json_is_refused() -> None:
    body = b"{not json"
    with pytest.raises(WebhookError, match="malformed booking"):
        verify_and_parse(body, _sig(body), SECRET)
