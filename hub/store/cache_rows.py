"""What building a site's cache reads of its bookings (``Store.cache_bookings``): the few
columns an entry needs, as plain tuples, for thousands of sites at a time (a
``StoredBooking`` per booking costs more than the query)."""

from __future__ import annotations

from typing import NamedTuple


class CacheBooking(NamedTuple):
    """A confirmed booking of one of a site's rooms, as a cache entry needs it."""

    id: str
    room_id: str
    member_id: str
    start: int
    end: int
    pin: str | None
