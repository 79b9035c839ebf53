"""Office hours: is a local time inside a door's configured schedule, and which mode follows?"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class OfficeHours(Protocol):
    """One window of a door's office hours (``edge.config.OfficeHours`` is one): ``days``
    in cron form ("mon-fri", "sat,sun"), ``start`` and ``end`` as local "HH:MM"."""

    @property
    def days(self) -> str: ...

    @property
    def start(self) -> str: ...

    @property
    def end(self) -> str: ...


def parse_days(spec: str) -> set[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``"mon,wed-fri"`` → weekday numbers (Monday = 0)."""
    out: set[int] = set()
    for part in spec.lower().replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        if lo not in _DAYS or (hi and hi not in _DAYS):
            raise ValueError(f"bad day list {spec!r}: use mon..sun, ranges like mon-fri, commas")
        a, b = _DAYS.index(lo), _DAYS.index(hi or lo)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return out


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_office_hours(hours: Sequence[OfficeHours], t: float, timezone: str) -> bool:
    """True when the Unix time ``t`` falls in one of ``hours`` in ``timezone`` local time.
    A window whose end is before its start runs past midnight into the next day."""
    local = dt.datetime.fromtimestamp(t, ZoneInfo(timezone))
    now = local.hour * 60 + local.minute
    today = local.weekday()
    for h in hours:
        days = parse_days(h.days)
        start, end = _minutes(h.start), _minutes(h.end)
        if start <= end:
            if today in days and start <= now < end:
                return True
        elif (today in days and now >= start) or ((today - 1) % 7 in days and now < end):
            return True
    return False


def scheduled_mode(hours: Sequence[OfficeHours], t: float, timezone: str, *,
                   clock_trusted: bool) -> Literal["normal", "office_hours"]:
    """The mode a door's office hours give it at the Unix time ``t``: ``office_hours``
    inside them, but only while the clock is trusted (edge/clock.py). An unsynchronised or
    stepped clock must not unlock a door, so the door stays ``normal`` (badges decide)
    until trust returns."""
    return "office_hours" if clock_trusted and in_office_hours(hours, t, timezone) else "normal"
