"""What the hub shows about its sites, read from its store: the dashboard's page data as
the types of ``hub.core.pages`` (which the API returns as they are and the templates
render) and the command line's sites table (``overview``).

Everything here runs on the thread that owns the store (the running hub's main loop).
``names`` decides
whether members' names are resolved (admins, or sites with ``show_names``); without it
no pseudonym, name, credential hash or booking reference leaves these functions: a
caretaker sees counts only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UNSET

from ..config import HubConfig, SiteConfig
from ..store import CacheState, FeedbackItem, Refusal, SiteState, Store, StoredEvent, SyncState, short, stream_notes
from .alerting import RECENT_ALERTS, alert_views
from .base import Base
from .pages import (
    CacheInfo,
    Door,
    EventView,
    NoshowDay,
    NoshowRoom,
    Room,
    SiteSnapshot,
    SiteStateView,
    SiteSummary,
    StreamInfo,
)

#: Event types shown as alarms (red) and as warnings (amber).
ALARM_TYPES = frozenset({"door.forced_open", "door.held_open"})
WARN_TYPES = frozenset({"access.denied", "cache.rejected", "command.rejected", "reader.error", "clock.untrusted"})
#: Event fields that are safe for every viewer, with the JSON types the API documents for
#: them (a value of another type, e.g. from a newer site's event, is left out).
_PLAIN_FIELDS: dict[str, tuple[type, ...]] = {
    "door": (str,), "room": (str,), "reason": (str,), "seconds": (int, float), "version": (int,), "error": (str,),
    "action": (str,), "reader": (str,), "detail": (str,), "software": (str,)}


def _plain(doc: dict[str, Any], key: str, types: tuple[type, ...]) -> Any:
    value = doc.get(key)
    return value if isinstance(value, types) and not isinstance(value, bool) else UNSET


def _name(store: Store, who: str | None, cache: dict[str, str]) -> str | None:
    if who is None:
        return None
    if who not in cache:
        member = store.member_by_who(who)
        cache[who] = member.display_name if member is not None else who
    return cache[who]


def event_view(store: Store, ev: StoredEvent, *, names: bool, cache: dict[str, str] | None = None) -> EventView:
    """One stored event for a viewer: type, time, level and the fields it may see."""
    try:
        doc = json.loads(ev.payload)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    out = EventView(site=ev.site_id, stream=ev.stream, seq=ev.seq, type=ev.type, ts=ev.ts,
                    level="alarm" if ev.type in ALARM_TYPES else "warn" if ev.type in WARN_TYPES else "info",
                    **{key: _plain(doc, key, types) for key, types in _PLAIN_FIELDS.items()})
    if ev.type.startswith("command."):
        out.command = _plain(doc, "command", (str,))
    if names:
        who = _plain(doc, "who", (str,))
        if who is not UNSET:
            out.who = who
            out.name = _name(store, who, {} if cache is None else cache) or who
        out.ref = _plain(doc, "ref", (str,))
    return out


def site_snapshot(store: Store, cfg: HubConfig, site_id: str, *, names: bool, now: float,
                  events: int = 12) -> SiteSnapshot:
    """Everything the site page shows, as of ``now``."""
    site = cfg.site(site_id)
    st = store.site_state(site_id)
    cs = store.cache_state(site_id)
    cache: dict[str, str] = {}
    occ_doc: dict[str, Any] = {}
    occ = store.occupancy(site_id)
    if occ is not None:
        try:
            occ_doc = json.loads(occ[0]).get("rooms", {})
        except ValueError:
            occ_doc = {}
    rooms = []
    for r in site.rooms:
        o = occ_doc.get(r.id, {})
        present = int(o.get("present", 0))
        capacity = o.get("capacity", r.capacity)
        room = Room(id=r.id, name=r.name or r.id, present=present, capacity=capacity,
                    full=capacity is not None and present >= capacity,
                    percent=0 if not capacity else min(100, round(100 * present / capacity)))
        if names:
            room.who = sorted((_name(store, w, cache) or w) for w in o.get("who", []))
        rooms.append(room)
    door_rows = store.door_states(site_id)
    doors = []
    for d in site.doors:
        if d in door_rows:
            try:
                ds = json.loads(door_rows[d][0])
            except ValueError:
                ds = {}
            doors.append(Door(id=d, known=True, locked=ds.get("locked"), open=ds.get("open"),
                              alarm=ds.get("alarm"), mode=ds.get("mode"), ts=ds.get("ts")))
        else:
            doors.append(Door(id=d, known=False, locked=None, open=None, alarm=None, mode=None, ts=None))
    applied = st.cache_version if st is not None else None
    published = cs.version if cs is not None else None
    notes = stream_notes(st.stream, store.event_streams(site_id)) if st is not None else stream_notes("", [])
    return SiteSnapshot(
        id=site.id, name=site.name or site.id, names=names, now=now,
        online=None if st is None or st.since is None else st.online,
        since=st.since if st else None, last_seen=st.last_seen if st else None,
        software=st.software if st else None, clock_synced=bool(st and st.clock_synced),
        lockdown=bool(st and st.lockdown), outbox_pending=st.outbox_pending if st else 0,
        cache=CacheInfo(published=published, built_at=cs.built_at if cs else None,
                        entries=cs.n_entries if cs else None, retained=cs.retained_version if cs else None,
                        applied=applied, expires_at=st.cache_expires_at if st else None,
                        current=published is not None and applied == published),
        rooms=rooms,
        occupancy_ts=occ[1] if occ is not None else None,
        doors=doors,
        alarms=sum(1 for d in doors if d.alarm),
        stream=StreamInfo(reset_at=notes["reset_at"], new=short(notes["stream"]),
                          previous=short(notes["previous"] or ""), previous_acked=notes["previous_acked"],
                          unknown_types=st.unknown_types if st else 0, quarantined=st.quarantined if st else 0),
        events=[event_view(store, e, names=names, cache=cache)
                for e in store.events(site_id=site_id, limit=events)] if events else [],
        alerts=alert_views(store, cfg, [site_id], since=now - RECENT_ALERTS, limit=20),
    )


def site_summary(store: Store, cfg: HubConfig, site_id: str, *, names: bool, now: float) -> SiteSummary:
    """The county list's entry: the snapshot plus the fields the admin API always had
    (``state``, ``cache_published``, ``cache_retained``)."""
    snap = site_snapshot(store, cfg, site_id, names=names, now=now, events=5)
    st = store.site_state(site_id)
    state = msgspec.convert(st, SiteStateView, from_attributes=True) if st is not None else None
    return SiteSummary(**msgspec.structs.asdict(snap), state=state, cache_published=snap.cache.published,
                       cache_retained=snap.cache.retained)


def events_for(store: Store, sites: list[str] | None, *, type: str | None, since: float | None,
               until: float | None, limit: int, names_for: dict[str, bool]) -> list[EventView]:
    """Events of ``sites`` (None: every site), newest first, at most ``limit``."""
    if sites is None:
        rows = store.events(type=type, since=since, until=until, limit=limit)
    else:
        rows = []
        for s in sites:
            rows += store.events(site_id=s, type=type, since=since, until=until, limit=limit)
        rows.sort(key=lambda e: (e.ts, e.seq), reverse=True)
        rows = rows[:limit]
    cache: dict[str, str] = {}
    return [event_view(store, e, names=names_for.get(e.site_id, False), cache=cache) for e in rows]


def _local_midnight(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day).astimezone().timestamp()


def noshows(store: Store, cfg: HubConfig, site_id: str, now: float, days: int = 7) -> list[NoshowRoom]:
    """Per room and local day of the last ``days`` (today included): confirmed bookings
    that have started, and how many of them were checked in to (an ``occupancy.checkin``
    event with the booking as ``ref``)."""
    today = dt.datetime.fromtimestamp(now).astimezone().date()
    day_list = [today - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
    starts = [_local_midnight(d) for d in day_list]
    t0 = starts[0]
    bookings = [b for b in store.bookings_for_site_window(site_id, int(t0), int(now) + 1, status="confirmed")
                if t0 <= b.start <= now]
    refs: set[str] = set()
    for e in store.events(site_id=site_id, type="occupancy.checkin", since=t0 - 86400, limit=1_000_000):
        try:
            ref = json.loads(e.payload).get("ref")
        except ValueError:
            continue
        if ref:
            refs.add(ref)
    out = []
    for r in cfg.site(site_id).rooms:
        per_day = []
        for i, d in enumerate(day_list):
            end = starts[i + 1] if i + 1 < len(starts) else now + 1
            mine = [b for b in bookings if b.room_id == r.id and starts[i] <= b.start < end]
            per_day.append(NoshowDay(day=d.isoformat(), booked=len(mine), present=sum(1 for b in mine if b.id in refs)))
        out.append(NoshowRoom(room=r.id, name=r.name or r.id, days=per_day))
    return out


@dataclass(frozen=True)
class SiteLine:
    """One site in the command line's sites table: its state, its latest cache, and what
    to say about its event streams (``stream_notes``; None when the site was never seen)."""

    site: SiteConfig
    state: SiteState | None
    cache: CacheState | None
    streams: dict[str, Any] | None


@dataclass(frozen=True)
class Overview:
    """Every configured site with its versions, the refusals, the feedback backlog and the
    booking sync's health (``torwart-hub sites``)."""

    sites: list[SiteLine]
    refusals: list[Refusal]
    backlog: list[FeedbackItem]
    sync: SyncState


class Display(Base):
    """What the dashboard and the command line show (see the module's docstring)."""

    def snapshot(self, site_id: str, *, names: bool, now: float, events: int = 12) -> SiteSnapshot:
        """Everything the site page shows, as of ``now`` (``site_snapshot``)."""
        return site_snapshot(self._store, self.cfg, site_id, names=names, now=now, events=events)

    def summary(self, site_id: str, *, names: bool, now: float) -> SiteSummary:
        """The county list's entry of a site (``site_summary``)."""
        return site_summary(self._store, self.cfg, site_id, names=names, now=now)

    def event_views(self, sites: list[str] | None, *, type: str | None, since: float | None,
                    until: float | None, limit: int, names_for: dict[str, bool]) -> list[EventView]:
        """Events of ``sites`` (None: every site), newest first, as viewers may see them."""
        return events_for(self._store, sites, type=type, since=since, until=until, limit=limit,
                          names_for=names_for)

    def noshows(self, site_id: str, now: float, days: int = 7) -> list[NoshowRoom]:
        """Per room and day: confirmed bookings and those checked in to (``noshows``)."""
        return noshows(self._store, self.cfg, site_id, now, days)

    def overview(self) -> Overview:
        """The sites table of the command line: every configured site with its versions."""
        store = self._store
        states = {s.site_id: s for s in store.site_states()}
        lines = []
        for site in self.cfg.sites:
            st = states.get(site.id)
            streams = stream_notes(st.stream, store.event_streams(site.id)) if st is not None else None
            lines.append(SiteLine(site, st, store.cache_state(site.id), streams))
        return Overview(lines, store.site_refusals(), store.feedback_backlog(),
                        store.get_sync_state(self.cfg.booking.adapter))
