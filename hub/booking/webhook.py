"""The platform's push: ``POST {hub}/api/v1/webhooks/booking`` (PROTOCOL.md §5).

The hub's web layer hands the raw request body and the ``X-Torwart-Timestamp`` and
``X-Torwart-Signature`` headers to :func:`verify_and_parse` and applies the returned booking
at once. The signature (HMAC-SHA256 with the webhook secret over ``TIMESTAMP.`` + the raw
body; ``hub.webhook_signing``, shared with the alerts the hub sends) is checked over the
exact bytes received before anything is parsed, so unauthenticated input never reaches
the JSON decoder.

Replays: a timestamp more than ``MAX_SKEW_SECONDS`` from the hub's clock is refused, and the
web layer records every accepted signature in the store (``remember_webhook_signature``)
and refuses one it has seen, so a captured request is good once, within five minutes,
across hub restarts. Whatever gets through still cannot roll a booking back: the store
never lets a version replace one with a later ``updated_at`` (``hub.store.supersedes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.errors import WebhookError
from hub.webhook_signing import (
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookUnauthorized,
    signature,
    verify,
)
from wire.errors import WireError
from wire.messages import Booking, decode

from .base import PlatformBooking, from_wire

MAX_BODY_BYTES = 64 * 1024

__all__ = ["MAX_BODY_BYTES", "MAX_SKEW_SECONDS", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SignedPush",
           "WebhookUnauthorized", "signature", "verify_and_parse"]


@dataclass(frozen=True, slots=True)
class SignedPush:
    """A verified push: the booking, its signed timestamp and its signature (64 lower-case
    hex digits; the key under which the hub remembers it against replays)."""

    booking: PlatformBooking
    timestamp: int
    signature: str


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
    ok = verify(raw_body, signature_header, timestamp_header, secret, now=now)
    try:
        booking: Booking = decode(raw_body, Booking)
    except WireError as exc:
        where = f" at {exc.field}" if exc.field else ""
        raise WebhookError(f"malformed booking{where}: {exc}") from None
    return SignedPush(from_wire(booking, source), ok.timestamp, ok.signature)
