"""The platform's signed push (PROTOCOL.md §5): signature first, then strict parsing."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest

from hub.booking import verify_and_parse
from hub.booking.base import unix
from hub.booking.webhook import MAX_BODY_BYTES, signature
from hub.errors import WebhookError
from testkit.booking_fake import webhook_signature

SECRET = secrets.token_bytes(32)
T0 = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
BOOKING = {"id": "b-1", "resource_id": "room-1", "member_id": "m-anna", "start": "2026-11-23T09:00:00+01:00",
           "end": "2026-11-23T09:00:00Z", "status": "confirmed", "updated_at": "2026-11-20T10:00:00Z",
           "pin": "4821"}


def _body(**changes: object) -> bytes:
    return json.dumps(dict(BOOKING, **changes)).encode()


def test_a_correctly_signed_booking_is_accepted() -> None:
    body = _body()
    b = verify_and_parse(body, webhook_signature(body, SECRET), SECRET)
    assert (b.id, b.resource_id, b.member_id, b.status, b.pin, b.source) == \
        ("b-1", "room-1", "m-anna", "confirmed", "4821", "webhook")
    assert (b.start, b.end) == (unix(T0), unix(T0) + 3600)
    assert b.updated_at == unix(dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC))
    assert "4821" not in repr(b)  # a pin is a door credential


def test_the_signature_helper_matches_the_platform_and_upper_case_hex_is_accepted() -> None:
    body = _body()
    assert signature(body, SECRET) == webhook_signature(body, SECRET)
    header = "sha256=" + signature(body, SECRET).removeprefix("sha256=").upper()
    assert verify_and_parse(body, header, SECRET).id == "b-1"


def test_a_tampered_body_is_refused() -> None:
    body = _body()
    header = webhook_signature(body, SECRET)
    with pytest.raises(WebhookError, match="does not match"):
        verify_and_parse(_body(member_id="m-mallory"), header, SECRET)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    body = _body()
    with pytest.raises(WebhookError, match="does not match"):
        verify_and_parse(body, webhook_signature(body, secrets.token_bytes(32)), SECRET)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    with pytest.raises(WebhookError, match="missing X-Torwart-Signature"):
        verify_and_parse(_body(), header, SECRET)


@pytest.mark.parametrize("header", [
    "sha256=" + "zz" * 32,  # not hex
    "sha256=" + "ab" * 31,  # too short
    "sha1=" + "ab" * 32,  # other algorithm
    "ab" * 32,  # no scheme
    "sha256=" + "ab" * 32 + "00",  # too long
])
def test_a_garbled_signature_is_refused(header: str) -> None:
    with pytest.raises(WebhookError, match="not sha256= followed by 64 hex digits"):
        verify_and_parse(_body(), header, SECRET)


def test_an_empty_secret_refuses_everything() -> None:
    body = _body()
    with pytest.raises(WebhookError, match="no webhook secret"):
        verify_and_parse(body, webhook_signature(body, b""), b"")


def test_an_oversized_body_is_refused_before_anything_else() -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    with pytest.raises(WebhookError, match="exceeds"):
        verify_and_parse(body, webhook_signature(body, SECRET), SECRET)


@pytest.mark.parametrize(("changes", "field"), [
    ({"member_id": 17}, "$.member_id"),
    ({"start": "2026-11-23T08:00:00"}, "$.start"),
    ({"status": "maybe"}, "$.status"),
    ({"pin": "12ab"}, "$.pin"),
])
def test_a_signed_but_malformed_booking_is_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    body = _body(**changes)
    with pytest.raises(WebhookError, match="malformed booking") as err:
        verify_and_parse(body, webhook_signature(body, SECRET), SECRET)
    assert field in str(err.value)
    assert "12ab" not in str(err.value)


def test_a_signed_booking_without_a_required_field_is_refused_naming_it() -> None:
    doc = dict(BOOKING)
    del doc["resource_id"]
    body = json.dumps(doc).encode()
    with pytest.raises(WebhookError, match="resource_id"):
        verify_and_parse(body, webhook_signature(body, SECRET), SECRET)


def test_a_signed_body_that_is_not_json_is_refused() -> None:
    body = b"{not json"
    with pytest.raises(WebhookError, match="malformed booking"):
        verify_and_parse(body, webhook_signature(body, SECRET), SECRET)
