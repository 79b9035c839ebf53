"""Bookings from ICS feeds, one feed per room: the export most booking tools offer.

Each sync reads every feed in full (ICS has no incremental form), expands recurring events
with ``recurring_ical_events`` (RRULE, RDATE, EXDATE, moved and cancelled occurrences)
within the window ``now - 1 day .. now + horizon_days`` and returns the whole window with
``complete=True``: an event that vanished from a feed is gone.

Mapping, where the feed format leaves room to choose:

* **Who.** Every ATTENDEE with a ``mailto:`` address becomes one booking, except rooms
  and resources (``CUTYPE=ROOM``/``RESOURCE``: booking tools invite the room itself) and
  people who declined (``PARTSTAT=DECLINED``). An event with no human attendee falls back
  to its ORGANIZER (a room booked by one person usually lists only the organizer). An
  override of one occurrence that names nobody (typical for a cancelled occurrence)
  inherits the people of its series. Addresses are lower-cased and handed to the
  resolver; an address it does not know is skipped and logged by the event's UID, never
  by the address.
* **Ids.** ``{resource}/{uid}/{member}`` for a single event, and
  ``{resource}/{uid}/{occurrence}/{member}`` for an occurrence of a series, where
  occurrence is its RECURRENCE-ID (its original start) in UTC (``20261123T080000Z``) or
  as a date for all-day series. Ids stay the same across syncs and when an event or one
  occurrence is moved. A UID that is long or holds ``/`` is replaced by a hash of it.
* **Times.** Date-only (all-day) values run from local midnight to local midnight in the
  configured timezone (default Europe/Berlin), DTEND being exclusive as RFC 5545 says;
  floating times are read in that timezone too.
* **Status.** ``STATUS:CANCELLED`` (of the event or of one occurrence) gives a cancelled
  booking; anything else, TENTATIVE included, is confirmed.
* **Version.** ``updated_at`` is LAST-MODIFIED, else DTSTAMP, else the time of the sync.
* **Failure.** A feed that cannot be fetched or parsed fails the whole sync with a
  SyncError naming the room. Returning the other rooms would mark the failed room's
  bookings as gone (the result is complete); failing keeps every room's last good
  bookings at the hub, which is the safe side.
* **Writing.** ICS is read-only: ``check_in`` and ``release`` raise UnsupportedOperation
  (``supports_write`` is False) rather than pretend, because a caller that believes a
  no-show room was released would tell people it is free.

Feed URLs usually embed a secret, so they are never logged; logs and errors name rooms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from hub.config import HubConfig
from hub.errors import ConfigError, HubError, SyncError

from .base import (
    AdapterType,
    MemberResolver,
    PlatformBooking,
    Skipped,
    Status,
    SyncResult,
    UnsupportedOperation,
    Wording,
    newest,
    ordered,
    unix,
)
from .transport import HttpPolicy, make_session, request

log = logging.getLogger(__name__)

DAY = 86400
_EMAIL = re.compile(r"[^\s:;,<>\"'()\[\]]+@[^\s:;,<>\"'()\[\]]+")
_PLAIN_UID = re.compile(r"[\x21-\x2e\x30-\x7e]{1,100}")  # printable ASCII without "/"


def _scrub(exc: BaseException) -> str:
    """A parser's complaint without e-mail addresses (it quotes the offending line)."""
    return f"{type(exc).__name__}: {_EMAIL.sub('<address>', str(exc))[:200]}"


def _uid_part(uid: str) -> str:
    if _PLAIN_UID.fullmatch(uid):
        return uid
    return "uid-" + hashlib.sha256(uid.encode()).hexdigest()[:24]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


class _Occurrence(NamedTuple):
    key: str  # the booking id without the member
    start: int
    end: int
    status: Status
    updated_at: int
    people: list[str]


#: ``feed 1: HTTP 200``, ``12 bookings from 2 feeds``.
WORDING = Wording(document="feed", documents="from {n} feeds",
                  reads_all="reading every room's calendar feed ({source})")


class IcsAdapter:
    """Read-only bookings from per-room ICS feeds.

    ``feeds`` pairs a resource id with its feed URL. ``resolve_member`` maps a lower-case
    e-mail address to a member id, or None for people the hub does not know. ``clock``
    gives the current Unix time (injectable for tests).
    """

    supports_write = False
    wording = WORDING

    def __init__(
        self,
        feeds: Sequence[tuple[str, str]],
        resolve_member: MemberResolver,
        *,
        horizon_days: int = 14,
        timezone: str = "Europe/Berlin",
        policy: HttpPolicy | None = None,
        source: str = "ics",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if horizon_days < 0:
            raise ValueError("horizon_days must be >= 0")
        for resource, url in feeds:
            if not resource:
                raise HubError("ICS feed without a resource id")
            if not url.startswith(("http://", "https://")):
                raise HubError(f"ICS feed of {resource}: URL must start with http:// or https://")
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
            raise HubError(f"unknown timezone {timezone!r}") from None
        self._feeds = list(feeds)
        self._resolve = resolve_member
        self.horizon_days = horizon_days
        self.policy = policy or HttpPolicy()
        self.source = source
        self._clock = clock
        self._session = make_session(self.policy)

    def __repr__(self) -> str:
        rooms = ", ".join(r for r, _ in self._feeds)
        return f"IcsAdapter(rooms=[{rooms}], source={self.source!r})"

    def fetch(self, since: int | None = None) -> SyncResult:
        """Every booking in the window from every feed; ``since`` is ignored (no incremental
        sync), ``cursor`` is None, ``complete`` True and ``window`` set. Raises SyncError if
        any feed cannot be fetched or parsed."""
        now = math.floor(self._clock())
        window = (now - DAY, now + self.horizon_days * DAY)
        found: dict[str, PlatformBooking] = {}
        skipped: dict[tuple[str, str | None, str], Skipped] = {}
        for resource, url in self._feeds:
            cal, occurrences = self._load(resource, url, window)
            self._map(resource, cal, occurrences, now=now, found=found, skipped=skipped)
        log.info("%s: %d bookings from %d feeds, %d skipped", self.source, len(found), len(self._feeds),
                 len(skipped))
        return SyncResult(ordered(found), None, len(self._feeds), tuple(skipped.values()), complete=True,
                          window=window)

    def _load(self, resource: str, url: str, window: tuple[int, int]) -> tuple[Any, list[Any]]:
        what = f"{self.source}: ICS feed of {resource}"
        reply = request(self._session, self.policy, "GET", url, what=what)
        if reply.status != 200:
            raise SyncError(f"{what}: HTTP {reply.status}")
        lo, hi = (dt.datetime.fromtimestamp(t, dt.UTC) for t in window)
        # icalendar and recurring_ical_events parse untrusted text and may fail in many
        # ways (ValueError, KeyError, their own errors); every one means "feed unusable".
        try:
            cal = icalendar.Calendar.from_ical(reply.body)
            if not isinstance(cal, icalendar.Calendar):
                raise ValueError("the document is not a VCALENDAR")
            occurrences = list(recurring_ical_events.of(cal).between(lo, hi))
        except Exception as exc:
            raise SyncError(f"{what} is not a usable calendar ({_scrub(exc)})") from None
        return cal, occurrences

    def _map(self, resource: str, cal: Any, occurrences: Iterable[Any], *, now: int,
             found: dict[str, PlatformBooking], skipped: dict[tuple[str, str | None, str], Skipped]) -> None:
        masters: dict[str, Any] = {}
        series: set[str] = set()
        for c in cal.walk("VEVENT"):
            uid = str(c.get("UID", ""))
            if c.get("RECURRENCE-ID") is None:
                masters[uid] = c
            if any(c.get(k) is not None for k in ("RRULE", "RDATE", "RECURRENCE-ID")):
                series.add(uid)

        def skip(uid: str | None, reason: str) -> None:
            # Once per event, not per occurrence: a weekly series would repeat itself.
            if (resource, uid, reason) not in skipped:
                log.info("%s: event %r in %s skipped: %s", self.source, uid, resource, reason)
                skipped[(resource, uid, reason)] = Skipped(uid, f"{resource}: {reason}")

        for occ in occurrences:
            uid = str(occ.get("UID", ""))
            if not uid:
                skip(None, "event without UID")
                continue
            try:
                o = self._read(resource, uid, occ, masters.get(uid), in_series=uid in series, now=now)
            except Exception as exc:
                # A property icalendar kept as "broken" fails only when read; the feed is
                # as unusable as one that does not parse.
                raise SyncError(f"{self.source}: ICS feed of {resource}: event {uid!r} is unreadable "
                                f"({_scrub(exc)})") from None
            if o.end <= o.start:
                skip(uid, "event does not end after it starts")
                continue
            if not o.people:
                skip(uid, "no attendee or organizer with an e-mail address")
            for email in o.people:
                member = self._resolve(email)
                if member is None:
                    skip(uid, "an attendee is not a known member")
                    continue
                newest(found, PlatformBooking(id=f"{o.key}/{member}", resource_id=resource, member_id=member,
                                              start=o.start, end=o.end, status=o.status, updated_at=o.updated_at,
                                              pin=None, source=self.source))

    def _read(self, resource: str, uid: str, occ: Any, master: Any, *, in_series: bool, now: int) -> _Occurrence:
        start = self._aware(occ.decoded("DTSTART"))
        end = self._aware(occ.decoded("DTEND")) if occ.get("DTEND") is not None else start
        key = f"{resource}/{_uid_part(uid)}"
        if in_series:
            rid = occ.get("RECURRENCE-ID")
            key += "/" + self._occurrence(rid.dt if rid is not None else occ.decoded("DTSTART"))
        status: Status = "cancelled" if str(occ.get("STATUS", "")).upper() == "CANCELLED" else "confirmed"
        stamp = occ.get("LAST-MODIFIED") or occ.get("DTSTAMP")
        updated = unix(self._aware(stamp.dt)) if stamp is not None else now
        return _Occurrence(key, unix(start), unix(end), status, updated, self._people(occ, master))

    def _aware(self, value: dt.date | dt.datetime) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=self._tz)
        return dt.datetime.combine(value, dt.time(), tzinfo=self._tz)

    def _occurrence(self, value: dt.date | dt.datetime) -> str:
        if isinstance(value, dt.datetime):
            return self._aware(value).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return value.strftime("%Y%m%d")

    @staticmethod
    def _people(occ: Any, master: Any) -> list[str]:
        """Lower-case addresses of the people an occurrence books for (see module doc)."""
        for comp in (occ, master):
            if comp is None or (comp.get("ATTENDEE") is None and comp.get("ORGANIZER") is None):
                continue
            humans = [a for a in _as_list(comp.get("ATTENDEE"))
                      if str(a.params.get("CUTYPE", "INDIVIDUAL")).upper() not in ("ROOM", "RESOURCE")]
            if not humans:
                humans = _as_list(comp.get("ORGANIZER"))
            emails: list[str] = []
            for a in humans:
                if str(a.params.get("PARTSTAT", "")).upper() == "DECLINED":
                    continue
                addr = str(a).strip()
                if addr.lower().startswith("mailto:") and len(addr) > 7:
                    emails.append(addr[7:].strip().lower())
            return list(dict.fromkeys(emails))
        return []

    def check_in(self, booking_id: str, at: int) -> None:
        """Always raises UnsupportedOperation: an ICS feed cannot be written to."""
        raise UnsupportedOperation(f"{self.source}: ICS feeds are read-only; cannot check in {booking_id!r}")

    def release(self, booking_id: str, reason: str = "no_show") -> None:
        """Always raises UnsupportedOperation: an ICS feed cannot be written to."""
        raise UnsupportedOperation(f"{self.source}: ICS feeds are read-only; cannot release {booking_id!r}")

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> IcsAdapter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def check(cfg: HubConfig, path: str) -> None:
    """``adapter = "ics"`` needs every room's ``ics_url`` (ConfigError otherwise)."""
    for i, site in enumerate(cfg.sites):
        for j, room in enumerate(site.rooms):
            if room.ics_url is None:
                raise ConfigError(path, f"sites[{i}].rooms[{j}].ics_url",
                                  'adapter = "ics" needs the calendar feed of every room')


def room_resource(site_id: str, room_id: str) -> str:
    """The resource of a room configured without ``resources``: its bookings carry it."""
    return f"ics:{site_id}/{room_id}"


def build(cfg: HubConfig, resolve_member: MemberResolver, policy: HttpPolicy) -> IcsAdapter:
    """The ICS adapter of ``cfg``: one feed per room with an ``ics_url`` (as its first
    resource), attendees' addresses resolved to members by ``resolve_member``."""
    feeds = [(room.resources[0], room.ics_url) for s in cfg.sites for room in s.rooms
             if room.ics_url is not None and room.resources]
    return IcsAdapter(feeds, resolve_member, horizon_days=cfg.booking.horizon_days, policy=policy, source="ics")


ADAPTER = AdapterType(name="ics", build=build, check=check, room_resource=room_resource, wording=WORDING)
