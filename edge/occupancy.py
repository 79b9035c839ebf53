"""Who is in which room, at the site.

A grant at a room's door through an ``in`` reader checks the member in (``badge``); a grant
through an ``out`` reader, or a second badge at a ``toggle`` room's door, checks out.
Check-out also happens at the booking's end (``booking_ended``), at the daily reset time
(``daily_reset``) and by the ``checkout_all`` command. Presence lives in the state
database, so it survives a restart; the retained ``occupancy`` message is republished on
every change and on every connect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from wire import messages as m

from .config import EdgeConfig
from .statedb import StateDB

log = logging.getLogger(__name__)

Emit = Callable[..., None]


class Occupancy:
    def __init__(self, cfg: EdgeConfig, state: StateDB, emit: Emit, publish: Callable[[bytes], object],
                 clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.state = state
        self._emit = emit
        self._publish = publish
        self._clock = clock
        self.rooms = {r.id: r for r in cfg.rooms}

    def on_grant(self, room: str | None, direction: str, who: str | None, ref: str | None,
                 until: int | None) -> None:
        """A door opened for ``who`` into ``room`` (the door's room) through a reader facing
        ``direction``."""
        if room is None or who is None or room not in self.rooms:
            return
        present = {w for r, w, *_ in self.state.presence() if r == room}
        if direction == "out" or (self.rooms[room].toggle and who in present):
            if who in present:
                self._out(room, who, ref, "badge")
                self.publish()
            return
        if who not in present:
            self.state.check_in(room, who, ref, until, self._clock())
            self._emit("occupancy.checkin", room=room, who=who, ref=ref, reason="badge")
            self.publish()

    def _out(self, room: str, who: str, ref: str | None, reason: str) -> None:
        self.state.check_out(room, who)
        self._emit("occupancy.checkout", room=room, who=who, ref=ref, reason=reason)

    def expire(self) -> int:
        """Check out everyone whose booking has ended."""
        now = self._clock()
        ended = [(r, w, ref) for r, w, ref, until, _ in self.state.presence() if until is not None and until <= now]
        for room, who, ref in ended:
            self._out(room, who, ref, "booking_ended")
        if ended:
            self.publish()
        return len(ended)

    def checkout_all(self, room: str | None, reason: str) -> int:
        gone = [(r, w, ref) for r, w, ref, *_ in self.state.presence() if room is None or r == room]
        for r, w, ref in gone:
            self._out(r, w, ref, reason)
        self.publish()
        log.info("checked out %d (%s)", len(gone), reason)
        return len(gone)

    def snapshot(self) -> m.Occupancy:
        rooms: dict[str, Any] = {
            r.id: {"present": 0, "capacity": r.capacity, "who": []} for r in self.cfg.rooms
        }
        for room, who, *_ in self.state.presence():
            if room in rooms:
                rooms[room]["present"] += 1
                rooms[room]["who"].append(who)
        return m.Occupancy(ts=self._clock(), rooms={
            k: m.RoomOccupancy(present=v["present"], capacity=v["capacity"], who=v["who"]) for k, v in rooms.items()
        })

    def publish(self) -> None:
        self._publish(m.encode(self.snapshot()))
