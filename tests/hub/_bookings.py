"""Bookings for hub tests: the adapters' normalized ``PlatformBooking`` with test defaults."""

from __future__ import annotations

from typing import Any

from hub.booking.base import PlatformBooking

NOW = 1_700_000_000


def Bk(id: str, resource_id: str, member_id: str, start: int, end: int, *, status: Any = "confirmed",
       updated_at: int = NOW, pin: str | None = None, source: str = "rest") -> PlatformBooking:
    """A booking as an adapter would produce it (``status`` may be any string, to test refusals)."""
    return PlatformBooking(id=id, resource_id=resource_id, member_id=member_id, start=start, end=end,
                           status=status, updated_at=updated_at, pin=pin, source=source)
