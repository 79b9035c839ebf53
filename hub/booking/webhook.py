"""The platform's push: ``POST {hub}/api/v1/webhooks/booking`` (PROTOCOL.md §5).

The hub's web layer hands the raw request body and the ``X-Torwart-Timestamp`` and
``X-Torwart-Signature`` headers to :func:`verify_and_parse` and applies the returned booking
at once. The signature (HMAC-SHA256 with the webhook secret over ``TIMESTAMP.`` + the raw
body) is checked over the exact bytes received before anything is parsed, so
unauthenticated input never reaches the JSON decoder.

Replays: a timestamp more than ``MAX_SKEW_SECONDS`` from the hub's clock is refused, and the
web layer records every accepted signature in the store (``remember_webhook_signature``)
and refuses one it has seen, so a captured request is good once, within five minutes,
across hub restarts. Whatever gets through still cannot roll a booking back: the store
never lets a version replace one with a later ``updated_at`` (``hub.store.supersedes``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from hub.errors import WebhookError
from wire.errors import WireError
from wire.messages import Booking, decode

from .base import PlatformBooking, from_wire

SIGNATURE_HEADER = "X-Torwart-Signature"
TIMESTAMP_HEADER = "X-Torwart-Timestamp"
MAX_BODY_BYTES = 64 * 1024
#: How far a push's timestamp may be from the hub's clock, either way.
MAX_SKEW_SECONDS = 300
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookUnauthorized(WebhookError):
    """The push is not authentic or not fresh (HTTP 401): no or a wrong signature, no or a
    stale timestamp, or a signature accepted before."""


@dataclass(frozen=True, slots=True)
class SignedPush:
    """A verified push: the booking, its signed timestamp and its signature (64 lower-case
    hex digits; the key under which the hub remembers it against replays)."""

    booking: PlatformBooking
    timestamp: int
    signature: str


def signature(raw_body: bytes, secret: bytes, timestamp: int) -> str:
    """The ``X-Torwart-Signature`` value a platform sends for ``raw_body`` at ``timestamp``:
    ``sha256=`` + the hex HMAC-SHA256 of ``TIMESTAMP.BODY``."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()


def verify_and_parse(raw_body: bytes, signature_header: str | None, timestamp_header: str | None, secret: bytes,
                     *, now: float, source: str = "webhook") -> SignedPush:
    """Check the push's signature and timestamp, then return the booking it carries.

    Raises WebhookUnauthorized when the secret is empty, a header is missing or malformed,
    the signature does not match ``TIMESTAMP.BODY`` (compared in constant time), or the
    timestamp is more than ``MAX_SKEW_SECONDS`` from ``now``; WebhookError when the body is
    larger than ``MAX_BODY_BYTES`` or is not a valid PROTOCOL.md Booking (the message then
    names the offending field, e.g. ``$.member_id``). Whether the signature was seen before
    is the caller's to check (it needs the store).
    """
    if not secret:
        raise WebhookUnauthorized("no webhook secret configured; refusing every push")
    if len(raw_body) > MAX_BODY_BYTES:
        raise WebhookError(f"body of {len(raw_body)} bytes exceeds {MAX_BODY_BYTES}")
    if not signature_header:
        raise WebhookUnauthorized(f"missing {SIGNATURE_HEADER} header")
    m = _SIGNATURE.fullmatch(signature_header.strip())
    if m is None:
        raise WebhookUnauthorized(f"{SIGNATURE_HEADER} is not sha256= followed by 64 hex digits")
    if not timestamp_header:
        raise WebhookUnauthorized(f"missing {TIMESTAMP_HEADER} header")
    ts_text = timestamp_header.strip()
    if _TIMESTAMP.fullmatch(ts_text) is None:
        raise WebhookUnauthorized(f"{TIMESTAMP_HEADER} is not Unix seconds")
    timestamp = int(ts_text)
    given = bytes.fromhex(m.group(1))
    expected = hmac.new(secret, ts_text.encode() + b"." + raw_body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise WebhookUnauthorized(f"{SIGNATURE_HEADER} does not match the timestamp and body")
    if abs(now - timestamp) > MAX_SKEW_SECONDS:
        raise WebhookUnauthorized(f"{TIMESTAMP_HEADER} is {now - timestamp:+.0f} s from the hub's clock "
                                  f"(at most {MAX_SKEW_SECONDS} s either way)")
    try:
        booking: Booking = decode(raw_body, Booking)
    except WireError as exc:
        where = f" at {exc.field}" if exc.field else ""
        raise WebhookError(f"malformed booking{where}: {exc}") from None
    return SignedPush(from_wire(booking, source), timestamp, given.hex())
