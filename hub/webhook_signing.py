"""The webhook signature of PROTOCOL.md §5, the one implementation both ways: the
platform's pushes the hub verifies (``hub.booking.webhook``) and the alerts the hub sends
(``hub.alerts.webhooks``), which a receiver checks the same way.

A request carries ``X-Torwart-Timestamp: UNIX_SECONDS`` and ``X-Torwart-Signature:
sha256=HEX``, the HMAC-SHA256 with the shared secret of the timestamp, a ``.``, and the
raw body (``TIMESTAMP.BODY``). A receiver checks the signature over the exact bytes
received, in constant time, before parsing anything, and refuses a timestamp more than
``MAX_SKEW_SECONDS`` from its clock (and, to be safe from replays within that window, a
signature it has accepted before).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from .errors import WebhookError

SIGNATURE_HEADER = "X-Torwart-Signature"
TIMESTAMP_HEADER = "X-Torwart-Timestamp"
#: How far a request's timestamp may be from the receiver's clock, either way.
MAX_SKEW_SECONDS = 300
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookUnauthorized(WebhookError):
    """The request is not authentic or not fresh (HTTP 401): no or a wrong signature, no or
    a stale timestamp, no secret to check it with, or a signature accepted before."""


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified request's signed timestamp and signature (64 lower-case hex digits: the
    key under which a receiver remembers it against replays)."""

    timestamp: int
    signature: str


def signature(raw_body: bytes, secret: bytes, timestamp: int) -> str:
    """The ``X-Torwart-Signature`` value for ``raw_body`` at ``timestamp``: ``sha256=`` +
    the hex HMAC-SHA256 of ``TIMESTAMP.BODY``."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()


def signed_headers(raw_body: bytes, secret: bytes, timestamp: int) -> dict[str, str]:
    """The two headers that sign ``raw_body`` at ``timestamp``."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(raw_body, secret, timestamp)}


def verify(raw_body: bytes, signature_header: str | None, timestamp_header: str | None, secret: bytes, *,
           now: float, receiver: str = "the hub") -> Verified:
    """Check a request's signature and timestamp; WebhookUnauthorized (saying which) when
    the secret is empty, a header is missing or malformed, the signature does not match
    ``TIMESTAMP.BODY``, or the timestamp is more than ``MAX_SKEW_SECONDS`` from ``now``
    (``receiver``'s clock, as the message says)."""
    if not secret:
        raise WebhookUnauthorized("no webhook secret configured; refusing every request")
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
        raise WebhookUnauthorized(f"{TIMESTAMP_HEADER} is {now - timestamp:+.0f} s from {receiver}'s clock "
                                  f"(at most {MAX_SKEW_SECONDS} s either way)")
    return Verified(timestamp, given.hex())
