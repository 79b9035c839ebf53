"""Booking platform adapters: the only part of Torwart that imports ``requests``.

* :mod:`.base`: :class:`PlatformBooking`, :class:`SyncResult`, the :class:`BookingAdapter`
  protocol every adapter satisfies.
* :mod:`.rest`: :class:`RestAdapter`, the REST contract of PROTOCOL.md §5 (incremental).
* :mod:`.ics`: :class:`IcsAdapter`, per-room ICS feeds (full window every time, read-only).
* :mod:`.webhook`: :func:`verify_and_parse` for the platform's signed, timestamped push.
* :mod:`.transport`: the shared HTTP policy (timeouts, retries, limits).

Adapters raise :class:`hub.errors.SyncError` and keep no bookings: the caller stores the
last good bookings and the cursor, and keeps them when a sync fails.
"""

from __future__ import annotations

from .base import BookingAdapter, PlatformBooking, Skipped, SyncResult, UnsupportedOperation, WriteFailed
from .ics import IcsAdapter
from .rest import RestAdapter
from .transport import HttpPolicy
from .webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignedPush, WebhookUnauthorized, verify_and_parse

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "BookingAdapter",
    "HttpPolicy",
    "IcsAdapter",
    "PlatformBooking",
    "RestAdapter",
    "SignedPush",
    "Skipped",
    "SyncResult",
    "UnsupportedOperation",
    "WebhookUnauthorized",
    "WriteFailed",
    "verify_and_parse",
]
