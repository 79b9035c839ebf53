"""The access decision: credential entries + door + time + cache state → grant or deny.

``decide`` is pure: no I/O, no clock reads, no state. Everything it needs is passed in,
so every rule is testable with plain values and the unlock path cannot block on anything.
``DenialLimiter`` is the one piece of state around it (per-reader denial budget); it too
takes the time as an argument.

Rules (PROTOCOL.md §3/§4, ARCHITECTURE.md "Clock honesty"), in order:

1. mode ``lockdown`` → deny ``lockdown``;
2. ``rate_limited`` → deny ``rate_limited``, before the lookup result is looked at, so a
   guesser learns nothing about which credentials exist;
3. no entries → ``unknown_credential``;
4. per entry: not naming this door → ``wrong_door``; a standing grant (``ref`` null):
   unbounded (``from`` and ``until`` null) → grant ``standing`` (even with an untrusted
   clock or an expired cache); bounded: clock untrusted → ``clock_untrusted`` (a stepped
   clock must neither revive an ended grant nor open one early), else window contains
   ``now`` → grant ``standing``, else ``outside_window`` (an expired cache does not matter);
   a booking (``ref`` set): cache expired → ``cache_expired``, else clock untrusted →
   ``clock_untrusted``, else window contains ``now`` → grant ``booking``, else
   ``outside_window``;
5. any grant wins (standing over booking); otherwise the most specific denial:
   ``cache_expired`` > ``clock_untrusted`` > ``outside_window`` > ``wrong_door``.

Windows are half-open, ``from <= now < until``; a null bound is unbounded. ``office_hours``
decides like ``normal`` (the schedule unlocks the door by itself; badges still check in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from wire.events import DenyReason, GrantReason
from wire.messages import Entry

Mode = Literal["normal", "office_hours", "lockdown"]
Reason = GrantReason | DenyReason

# Most specific first: the reason a denied member most needs to hear.
_DENIAL_RANK: dict[DenyReason, int] = {
    "cache_expired": 0,
    "clock_untrusted": 1,
    "outside_window": 2,
    "wrong_door": 3,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one presentation. ``entry`` is the granting entry (who/ref/room for
    the event and the check-in); None for denials and the exit button."""

    granted: bool
    reason: Reason
    entry: Entry | None = None


def in_window(entry: Entry, now: float) -> bool:
    """``from <= now < until``, a null bound being unbounded."""
    return (entry.from_ is None or entry.from_ <= now) and (entry.until is None or now < entry.until)


def decide(
    entries: Sequence[Entry],
    *,
    door: str,
    now: float,
    cache_expires_at: int | None,
    clock_trusted: bool,
    mode: Mode,
    rate_limited: bool,
    door_room: str | None = None,
) -> Decision:
    """Decide whether the credential whose cache ``entries`` are given opens ``door``.

    ``door_room`` (the room the door leads into) only breaks ties between several granting
    entries: one booked for that room is preferred, so that the check-in goes to the right
    booking. Otherwise the first granting entry in ``entries`` order is reported.
    """
    if mode == "lockdown":
        return Decision(False, "lockdown")
    if rate_limited:
        return Decision(False, "rate_limited")
    if not entries:
        return Decision(False, "unknown_credential")

    expired = cache_expires_at is not None and now >= cache_expires_at
    standing: list[Entry] = []
    bookings: list[Entry] = []
    denial: DenyReason = "wrong_door"
    for e in entries:
        reason: DenyReason
        if door not in e.doors:
            reason = "wrong_door"
        elif e.ref is None:
            if (e.from_ is None and e.until is None) or (clock_trusted and in_window(e, now)):
                standing.append(e)
                continue
            reason = "outside_window" if clock_trusted else "clock_untrusted"
        elif expired:
            reason = "cache_expired"
        elif not clock_trusted:
            reason = "clock_untrusted"
        elif in_window(e, now):
            bookings.append(e)
            continue
        else:
            reason = "outside_window"
        if _DENIAL_RANK[reason] < _DENIAL_RANK[denial]:
            denial = reason

    if standing:
        return Decision(True, "standing", _prefer_room(standing, door_room))
    if bookings:
        return Decision(True, "booking", _prefer_room(bookings, door_room))
    return Decision(False, denial)


def _prefer_room(candidates: list[Entry], room: str | None) -> Entry:
    if room is not None:
        for e in candidates:
            if e.room == room:
                return e
    return candidates[0]


def exit_decision(mode: Mode) -> Decision:
    """The exit button always opens (reason ``exit_button``), lockdown included: egress is
    never blocked."""
    del mode  # deliberately ignored; the parameter documents that the mode was considered
    return Decision(True, "exit_button")


class DenialLimiter:
    """Per-key (reader id) token bucket of denials.

    Each key starts with ``burst`` tokens; every recorded denial takes one; one token comes
    back every ``refill_seconds``, up to ``burst``. A key with less than one token is
    ``limited``. Time is passed in (use a monotonic clock: a wall-clock step must not
    unlock or lock a reader); if it goes backwards, no tokens are added and the bucket
    restarts from the new time rather than waiting for the old one.

    The agent should record only denials that consulted the cache (not ``rate_limited``
    ones), so a limited reader recovers within ``refill_seconds`` of the last guess.
    Not thread-safe: used from the agent's main loop only, like the stores.
    """

    def __init__(self, burst: int, refill_seconds: float) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        if not (refill_seconds > 0 and math.isfinite(refill_seconds)):
            raise ValueError(f"refill_seconds must be a positive number, not {refill_seconds}")
        self.burst = burst
        self.refill_seconds = refill_seconds
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        state = self._buckets.get(key)
        if state is None:
            return float(self.burst)
        tokens, at = state
        elapsed = max(0.0, now - at)
        return min(float(self.burst), tokens + elapsed / self.refill_seconds)

    def tokens(self, key: str, now: float) -> float:
        """Denials ``key`` may still have before it is limited (fractional)."""
        return self._tokens(key, now)

    def limited(self, key: str, now: float) -> bool:
        """True while ``key`` has used up its denials."""
        return self._tokens(key, now) < 1.0

    def record_denial(self, key: str, now: float) -> None:
        """Take one token from ``key`` (never below zero)."""
        tokens = max(0.0, self._tokens(key, now) - 1.0)
        self._buckets[key] = (tokens, now)

    def denied_keys(self) -> list[str]:
        """The keys that have recorded a denial (the others hold the full burst)."""
        return list(self._buckets)

    def restore(self, key: str, tokens: float, now: float) -> None:
        """Set ``key``'s budget to ``tokens`` as of ``now`` (clamped to 0..burst): how a
        budget kept from an earlier process comes back (edge/limiter.py)."""
        if not math.isfinite(tokens):
            tokens = 0.0
        self._buckets[key] = (min(float(self.burst), max(0.0, tokens)), now)
