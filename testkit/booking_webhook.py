"""The booking platform's webhook pushes as the platform sends them (PROTOCOL.md §5),
written here independently of the hub's own signing code (hub/webhook_signing.py), so
that the tests check one against the other."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any


def webhook_signature(body: bytes, secret: bytes, timestamp: int) -> str:
    """The ``X-Torwart-Signature`` header value of PROTOCOL.md §5: HMAC-SHA256 with the
    webhook secret over ``TIMESTAMP.BODY``."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_webhook(booking: dict[str, Any], secret: bytes, *,
                   timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a push of ``booking`` as the platform sends it, signed at
    ``timestamp`` (default: now); keep them to send the very same request again."""
    body = json.dumps(booking).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    return body, {"Content-Type": "application/json", "X-Torwart-Timestamp": str(ts),
                  "X-Torwart-Signature": webhook_signature(body, secret, ts)}


def post_webhook(hub_url: str, body: bytes, headers: dict[str, str], *, timeout: float = 10.0) -> int:
    """POST a push (``signed_webhook``) to the hub's webhook; return the HTTP status."""
    req = urllib.request.Request(  # noqa: S310 (test tool; the URL is the hub under test)
        hub_url.rstrip("/") + "/api/v1/webhooks/booking", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def push_webhook(hub_url: str, booking: dict[str, Any], secret: bytes, *, signature: str | None = None,
                 timestamp: int | None = None, timeout: float = 10.0) -> int:
    """POST ``booking`` to the hub's webhook as the platform would (signed now, or at
    ``timestamp``; ``signature`` replaces the real one); return the HTTP status."""
    body, headers = signed_webhook(booking, secret, timestamp=timestamp)
    if signature is not None:
        headers["X-Torwart-Signature"] = signature
    return post_webhook(hub_url, body, headers, timeout=timeout)
