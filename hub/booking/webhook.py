"""The platform's push: ``POST {hub}/api/v1/webhooks/booking`` (PROTOCOL.md §5).

The hub's web layer hands the raw request body and the ``X-Torwart-Signature`` header to
:func:`verify_and_parse` and applies the returned booking at once. The signature is checked
over the exact bytes received before anything is parsed, so unauthenticated input never
reaches the JSON decoder.

The contract carries no timestamp or nonce, so a captured request can be replayed; a
replay only re-applies a booking version the hub has already seen, and the hub keeps the
newest ``updated_at`` per id, so it cannot roll a booking back.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from hub.errors import WebhookError
from wire.errors import WireError
from wire.messages import Booking, decode

from .base import PlatformBooking, from_wire

SIGNATURE_HEADER = "X-Torwart-Signature"
MAX_BODY_BYTES = 64 * 1024
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def signature(raw_body: bytes, secret: bytes) -> str:
    """The header value a platform sends for ``raw_body``: ``sha256=`` + 64 hex digits."""
    return "sha256=" + hmac.new(secret, raw_body, hashlib.sha256).hexdigest()


def verify_and_parse(raw_body: bytes, signature_header: str | None, secret: bytes, *,
                     source: str = "webhook") -> PlatformBooking:
    """Check the HMAC-SHA256 signature of ``raw_body`` and return the booking it carries.

    Raises WebhookError when the secret is empty, the body is larger than
    ``MAX_BODY_BYTES``, the header is missing or not ``sha256=HEX``, the signature does not
    match (compared in constant time), or the body is not a valid PROTOCOL.md Booking (the
    message then names the offending field, e.g. ``$.member_id``).
    """
    if not secret:
        raise WebhookError("no webhook secret configured; refusing every push")
    if len(raw_body) > MAX_BODY_BYTES:
        raise WebhookError(f"body of {len(raw_body)} bytes exceeds {MAX_BODY_BYTES}")
    if not signature_header:
        raise WebhookError(f"missing {SIGNATURE_HEADER} header")
    m = _SIGNATURE.fullmatch(signature_header.strip())
    if m is None:
        raise WebhookError(f"{SIGNATURE_HEADER} is not sha256= followed by 64 hex digits")
    expected = hmac.new(secret, raw_body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, bytes.fromhex(m.group(1))):
        raise WebhookError(f"{SIGNATURE_HEADER} does not match the body")
    try:
        booking: Booking = decode(raw_body, Booking)
    except WireError as exc:
        where = f" at {exc.field}" if exc.field else ""
        raise WebhookError(f"malformed booking{where}: {exc}") from None
    return from_wire(booking, source)
