"""Per-message limits on what a site sends to the hub.

A site's broker login may publish only on its own topics (PROTOCOL.md §2), but there it
may publish anything. So that one site's messages can neither grow the hub's store without
bound nor hold up the hub's main loop (which serves every site), the hub refuses:

- a message larger than the limit for its topic, by ``len()`` on paho's network thread,
  before anything decodes it or queues it for the main loop (``SiteLimits.too_large``);
- an occupancy report for a room the hub does not know, or listing more people in a room
  than its configured capacity allows with a margin (``SiteLimits.occupancy_refusal``).

Every refusal is logged and counted per site (hub.store.Refusal, ``torwart-hub sites``).

The byte limits leave a wide margin over the largest legitimate message of each kind: an
``enroll.read`` event with its sealed credential (at most 4096 characters) and every text
field at its 256-character limit is under 8 KiB; a status with a 512-character
``storage_error`` under 4 KiB; door states and acks under 2 KiB. Unknown fields are allowed
on the wire (a newer site may add some), hence the margin.
"""

from __future__ import annotations

import threading
from typing import Any

from wire import messages as m
from wire.topics import Kind

from .config import HubConfig

#: An event (PROTOCOL.md §4): 8 times the largest one a site sends today.
EVENT_MAX_BYTES = 64 * 1024
#: A status, a door state, a cache or command acknowledgement.
SMALL_MAX_BYTES = 16 * 1024
#: An occupancy report: this much, plus ROOM_BYTES per configured room and WHO_BYTES per
#: person the room may list (``who_limit``).
OCCUPANCY_BASE_BYTES = 4 * 1024
ROOM_BYTES = 512
#: One ``who`` (at most 256 characters; the hub's pseudonyms have 18) with its quotes and comma.
WHO_BYTES = 300
#: A room may list its capacity plus this margin (at least WHO_MARGIN_MIN, else its capacity
#: again: people who came in with someone else's badge are not listed, but a room can be
#: overfull); a room without a configured capacity NO_CAPACITY_WHO; never more than MAX_WHO.
WHO_MARGIN_MIN = 20
NO_CAPACITY_WHO = 1000
MAX_WHO = 5000

_FIXED = {
    Kind.EVENT: EVENT_MAX_BYTES,
    Kind.STATUS: SMALL_MAX_BYTES,
    Kind.DOOR: SMALL_MAX_BYTES,
    Kind.CACHE_ACK: SMALL_MAX_BYTES,
    Kind.COMMAND_ACK: SMALL_MAX_BYTES,
}


def who_limit(capacity: int | None) -> int:
    """How many people an occupancy report may list for a room of ``capacity``."""
    if capacity is None:
        return NO_CAPACITY_WHO
    return min(MAX_WHO, capacity + max(capacity, WHO_MARGIN_MIN))


class SiteLimits:
    """The limits for the sites of one hub configuration (computed once; any thread may
    ask, nothing changes after construction)."""

    def __init__(self, cfg: HubConfig) -> None:
        self._rooms = {s.id: {r.id: who_limit(r.capacity) for r in s.rooms} for s in cfg.sites}
        self._occupancy = {
            site: OCCUPANCY_BASE_BYTES + sum(ROOM_BYTES + n * WHO_BYTES for n in rooms.values())
            for site, rooms in self._rooms.items()
        }

    def knows(self, site: str) -> bool:
        """Whether ``site`` is configured."""
        return site in self._rooms

    def max_bytes(self, site: str, kind: Kind) -> int:
        """The largest message the hub takes from ``site`` on topics of ``kind``."""
        if kind is Kind.OCCUPANCY:
            return self._occupancy.get(site, OCCUPANCY_BASE_BYTES)
        return _FIXED.get(kind, SMALL_MAX_BYTES)

    def too_large(self, site: str, kind: Kind, size: int) -> str | None:
        """Why a message of ``size`` bytes is refused, or None when it is within the limit."""
        limit = self.max_bytes(site, kind)
        return f"{size} bytes, limit {limit}" if size > limit else None

    def occupancy_refusal(self, site: str, occ: m.Occupancy) -> tuple[str, str] | None:
        """(reason code, detail) when ``occ`` names a room the hub does not know for
        ``site``, or lists more people in a room than ``who_limit`` of its configured
        capacity; None when it may be stored."""
        rooms = self._rooms.get(site, {})
        for room, ro in occ.rooms.items():
            limit = rooms.get(room)
            if limit is None:
                return "unknown_room", f"room {room!r} is not configured for this site"
            if len(ro.who) > limit:
                return "too_many_present", f"room {room!r} lists {len(ro.who)} people, limit {limit}"
        return None


class RefusalTally:
    """Refusals noted on any thread (paho's, the main loop), handed to the main loop in
    bulk: a flood of oversized messages costs one dict update each, and one store
    transaction per flush, not one per message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[Any]] = {}

    def add(self, site: str, kind: str, reason: str) -> bool:
        """Count one refusal; True when this is the first since the last ``take`` (the
        caller then posts a flush to the main loop)."""
        with self._lock:
            first = not self._pending
            entry = self._pending.setdefault((site, kind), [0, reason])
            entry[0] += 1
            entry[1] = reason
            return first

    def take(self) -> list[tuple[str, str, int, str]]:
        """What was counted since the last call: (site, kind, how many, last reason)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [(site, kind, n, reason) for (site, kind), (n, reason) in sorted(pending.items())]
