"""Which events and site states open or clear which alert: pure functions and small
in-memory trackers, no store.

An alert is keyed by (site, kind, subject): the subject is the door or reader it is about,
or "" for the site as a whole (site "" is the hub itself: ``sync_failing``). Kinds and what
clears them:

- ``door_forced`` (``door.forced_open``) and ``door_held`` (``door.held_open``): cleared
  by ``door.closed`` of that door;
- ``reader_tamper``, ``reader_offline``, ``reader_error`` (the ``reader.*`` events):
  cleared by ``reader.online`` of that reader;
- ``site_offline``: the site's last status says offline for longer than
  ``offline_minutes``; cleared when it is online again;
- ``storage_error``: an online Status with ``storage_error`` set; cleared by one without;
- ``lockdown``: an online Status with ``lockdown`` true (the message says it started);
  cleared by one with it false (the message says it ended);
- ``clock_untrusted``: the site's clock untrusted (Status ``clock_synced`` false, or a
  ``clock.untrusted`` event) for longer than ``clock_minutes``; cleared when trusted;
- ``cache_stale``: the site online but not on the latest cache version the hub published
  for longer than ``cache_minutes``; cleared when it is;
- ``denials`` (guessing): ``denials`` refused badges (unknown card, wrong door, outside
  the window, rate limited) at one door within ``denials_minutes``; cleared when that door
  has had none for ``denials_minutes``;
- ``sync_failing``: the booking platform sync failed ``sync_failures`` times in a row;
  cleared by a successful sync.

The durations are counted from the condition's first sighting (``Since``). The running
hub keeps those starts in its store (hub/alerts/conditions.py: ``StoredSince``), so a
restart or another hub node counts from the same start. The denials' window (``Denials``)
is read from the refusals stored in the events (hub/alerts/denials.py: ``StoredDenials``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeGuard

from wire import messages as m

from .settings import ALL_KINDS

DOOR_KINDS = ("door_forced", "door_held")
READER_KINDS = ("reader_tamper", "reader_offline", "reader_error")
SITE_OFFLINE = "site_offline"
STORAGE_ERROR = "storage_error"
LOCKDOWN = "lockdown"
CLOCK_UNTRUSTED = "clock_untrusted"
CACHE_STALE = "cache_stale"
DENIALS = "denials"
SYNC_FAILING = "sync_failing"
KINDS: tuple[str, ...] = ALL_KINDS
#: The site of an alert about the hub itself.
HUB = ""
#: Refusals that look like someone trying cards (not the site's own state: lockdown,
#: an untrusted clock or an expired cache refuse everybody).
GUESS_REASONS = frozenset({"unknown_credential", "wrong_door", "outside_window", "rate_limited"})


@dataclass(frozen=True, slots=True)
class Decision:
    """Open or clear the alert (kind, subject) of a site; ``detail`` goes into the message."""

    action: Literal["open", "clear"]
    kind: str
    subject: str
    at: float
    detail: str | None = None


def from_event(ev: m.Event) -> list[Decision]:
    """What one stored event decides (nothing for most events)."""
    if isinstance(ev, m.DoorForcedOpen):
        return [Decision("open", "door_forced", ev.door, ev.ts)]
    if isinstance(ev, m.DoorHeldOpen):
        return [Decision("open", "door_held", ev.door, ev.ts, f"{ev.seconds:.0f} s")]
    if isinstance(ev, m.DoorClosed):
        return [Decision("clear", k, ev.door, ev.ts) for k in DOOR_KINDS]
    if isinstance(ev, m.ReaderTamper):
        return [Decision("open", "reader_tamper", ev.reader, ev.ts)]
    if isinstance(ev, m.ReaderOffline):
        return [Decision("open", "reader_offline", ev.reader, ev.ts)]
    if isinstance(ev, m.ReaderError):
        return [Decision("open", "reader_error", ev.reader, ev.ts, ev.error)]
    if isinstance(ev, m.ReaderOnline):
        return [Decision("clear", k, ev.reader, ev.ts) for k in READER_KINDS]
    return []


def from_status(st: m.Status, is_open: set[str], now: float) -> list[Decision]:
    """What an online Status decides about ``storage_error`` and ``lockdown`` (``is_open``:
    the site's kinds with an open alert). An offline Status (the Last Will) says nothing
    about either: it carries the defaults, not the site's state."""
    if st.state != "online":
        return []
    at = st.ts or now
    out: list[Decision] = []
    if st.storage_error is not None and STORAGE_ERROR not in is_open:
        out.append(Decision("open", STORAGE_ERROR, "", at, st.storage_error))
    elif st.storage_error is None and STORAGE_ERROR in is_open:
        out.append(Decision("clear", STORAGE_ERROR, "", at))
    if st.lockdown and LOCKDOWN not in is_open:
        out.append(Decision("open", LOCKDOWN, "", at))
    elif not st.lockdown and LOCKDOWN in is_open:
        out.append(Decision("clear", LOCKDOWN, "", at))
    return out


@dataclass(frozen=True, slots=True)
class SiteSeen:
    """What ``offline`` needs of a site's state: online or not, and since when."""

    site: str
    online: bool
    since: float | None


def offline(states: Iterable[SiteSeen], open_offline: set[str], now: float,
            offline_seconds: float) -> list[tuple[str, Decision]]:
    """(site, decision) for every site offline longer than ``offline_seconds`` without an
    open ``site_offline`` alert (open), and every site online again with one (clear).
    A site the hub has never seen (no state) is not judged."""
    out: list[tuple[str, Decision]] = []
    for st in states:
        if not st.online and st.since is not None and now - st.since >= offline_seconds \
                and st.site not in open_offline:
            out.append((st.site, Decision("open", SITE_OFFLINE, "", st.since)))
        elif st.online and st.site in open_offline:
            out.append((st.site, Decision("clear", SITE_OFFLINE, "", st.since if st.since is not None else now)))
    return out


class Since:
    """Since when a condition holds, per key, in memory (the hub's alerter keeps the starts
    in its store: ``hub.alerts.conditions.StoredSince`` records each ``see`` there)."""

    def __init__(self) -> None:
        self._since: dict[tuple[str, str], float] = {}

    def see(self, key: tuple[str, str], holds: bool, at: float) -> None:
        """The condition holds (kept from its first sighting) or not (forgotten)."""
        if holds:
            self._since[key] = min(at, self._since.get(key, at))
        else:
            self._since.pop(key, None)

    def since(self, key: tuple[str, str]) -> float | None:
        return self._since.get(key)

    def overdue(self, key: tuple[str, str], now: float, seconds: float) -> bool:
        t = self._since.get(key)
        return t is not None and now - t >= seconds


def timed(kind: str, key: tuple[str, str], since: Since, *, is_open: bool, now: float,
          seconds: float) -> Decision | None:
    """Open ``kind`` once its condition has held ``seconds``; clear it when it no longer holds."""
    if not is_open and since.overdue(key, now, seconds):
        return Decision("open", kind, "", since.since(key) or now)
    if is_open and since.since(key) is None:
        return Decision("clear", kind, "", now)
    return None


def guessing(ev: m.Event) -> TypeGuard[m.AccessDenied]:
    """A refused badge that looks like someone trying cards (``GUESS_REASONS``)."""
    return isinstance(ev, m.AccessDenied) and ev.reason in GUESS_REASONS


def burst(times: Iterable[float], count: int, window: float) -> float | None:
    """The time of the last of the first ``count`` refusals (``times``, in any order)
    that lie within ``window`` seconds of each other, or None when there are none."""
    ts = sorted(times)
    for i in range(count - 1, len(ts)):
        if ts[i] - ts[i - count + 1] <= window:
            return ts[i]
    return None


class Denials:
    """Refused badges per (site, door) within a sliding window (``window`` seconds).

    This class keeps them in the memory of the process (the rules' own reference); the
    running hub counts from the refusals stored in its events instead, which every hub
    node shares and a restart keeps: ``hub.alerts.denials.StoredDenials`` overrides
    ``_times`` and ``_last`` (docs/alerts.md, "Durations")."""

    def __init__(self, count: int, window: float) -> None:
        self.count = count
        self.window = window
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def add(self, site: str, ev: m.Event, at: float) -> Decision | None:
        """Count a refusal that looks like guessing, as of ``at`` (the event's time where
        its clock was trusted, else the hub's): ``open`` once ``count`` refusals at its
        door lie within one window around ``at``; the alert opens at the last of them."""
        if not guessing(ev):
            return None
        end = burst(self._times(site, ev.door, at), self.count, self.window)
        if end is None:
            return None
        return Decision("open", DENIALS, ev.door, end, f"{self.count} / {self.window / 60:g} min")

    def quiet(self, site: str, door: str, opened_at: float, now: float) -> bool:
        """No refusal at the door for a whole window (since the last one known, or the
        alert's opening if that is later)."""
        last = self._last(site, door, now)
        return now - (opened_at if last is None else max(last, opened_at)) >= self.window

    def _times(self, site: str, door: str, at: float) -> list[float]:
        """Record the refusal at ``at``; the times of the door's refusals within a window of it."""
        q = self._seen.setdefault((site, door), deque())
        q.append(at)
        while q and q[0] < at - self.window:
            q.popleft()
        while len(q) > self.count:
            q.popleft()
        return list(q)

    def _last(self, site: str, door: str, now: float) -> float | None:
        """The time of the door's last refusal known (None: none)."""
        q = self._seen.get((site, door))
        return max(q) if q else None


def sync(failures: int, last_error: str | None, is_open: bool, needed: int, now: float) -> Decision | None:
    """``sync_failing`` from the booking sync's consecutive failures."""
    if failures >= needed and not is_open:
        return Decision("open", SYNC_FAILING, "", now, last_error)
    if failures == 0 and is_open:
        return Decision("clear", SYNC_FAILING, "", now)
    return None
