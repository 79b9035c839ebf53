"""What the hub shows about a site, as msgspec types: the dashboard's pages and API
answers are these, and its OpenAPI document is generated from them (hub.dashboard.openapi).
Names, pseudonyms and booking references appear only where ``names`` allowed them
(hub.core.display)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType


class Room(Struct, kw_only=True):
    """A room: present, capacity, full; ``who`` (names) for admins or where the site shows names."""

    id: str
    name: str
    present: int
    capacity: int | None
    full: bool
    percent: int
    who: list[str] | UnsetType = UNSET


class Door(Struct, kw_only=True):
    """A door as its site last reported it; ``known`` false before the first report."""

    id: str
    known: bool
    locked: bool | None
    open: Annotated[bool | None, Meta(description="null without a door contact")]
    alarm: Literal["held_open", "forced_open"] | None
    mode: str | None
    ts: float | None


class CacheInfo(Struct, kw_only=True):
    """The site's signed cache: the version published and the one the site applied."""

    published: int | None
    built_at: int | None
    entries: int | None
    retained: int | None
    applied: int | None
    expires_at: int | None
    current: bool


class StreamInfo(Struct, kw_only=True):
    """The site's event stream, and the one before it after a reinstall."""

    reset_at: float | None
    new: str
    previous: str
    previous_acked: int | None
    unknown_types: int
    quarantined: int


class EventView(Struct, kw_only=True):
    """One event for a viewer: type, time, level and the fields the viewer may see
    (``who``, ``name`` and ``ref`` only where names may be seen)."""

    site: str
    stream: str
    seq: int
    type: str
    ts: float
    level: Literal["alarm", "warn", "info"]
    door: str | UnsetType = UNSET
    room: str | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    seconds: int | float | UnsetType = UNSET
    version: int | UnsetType = UNSET
    error: str | UnsetType = UNSET
    action: str | UnsetType = UNSET
    reader: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    software: str | UnsetType = UNSET
    command: str | UnsetType = UNSET
    who: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    ref: str | UnsetType = UNSET


class AlertView(Struct, kw_only=True):
    """An alert (hub/alerts): one occurrence of (site, kind, subject) from ``opened_at``
    (the site's time) until ``resolved_at``; who acknowledged it and when; how many
    reminders went out and when it went to the admins. Site "" is the hub itself."""

    id: int
    site: str
    kind: str
    subject: Annotated[str, Meta(description="the door or reader; empty for the site as a whole")]
    urgent: bool
    open: bool
    opened_at: float
    resolved_at: float | None
    detail: str | None
    acked_at: float | None
    acked_by: str | None
    reminders: int
    escalated_at: float | None


class SiteSnapshot(Struct, kw_only=True):
    """Everything a site's page shows: online state and since when, clock trust, lockdown,
    the cache, rooms with occupancy, doors with alarms, the event stream, last events.
    ``online`` is null for a site never seen."""

    id: str
    name: str
    names: bool
    now: float
    online: bool | None
    since: float | None
    last_seen: float | None
    software: str | None
    clock_synced: bool
    lockdown: bool
    outbox_pending: int
    cache: CacheInfo
    rooms: list[Room]
    occupancy_ts: float | None
    doors: list[Door]
    alarms: int
    stream: StreamInfo
    events: list[EventView]
    #: Its open alerts and those of the last 24 hours, newest first (none without ``[alerts]``).
    alerts: list[AlertView] = []


class SiteStateView(Struct, kw_only=True):
    """A site's state as the hub keeps it (the admin API's ``state``)."""

    site_id: str
    online: bool
    since: float | None
    last_seen: float | None
    boot: str | None
    software: str | None
    cache_version: int | None
    cache_expires_at: int | None
    clock_synced: bool
    outbox_pending: int
    lockdown: bool
    status: str | None
    acked_upto: int
    max_seq: int
    gaps: list[tuple[int, int]]
    stream: str
    unknown_types: int
    quarantined: int


class SiteSummary(SiteSnapshot, kw_only=True):
    """A site in the county list: its snapshot (last 5 events), its state (null for a site
    never seen), and the cache versions as the admin API always had them."""

    state: SiteStateView | None
    cache_published: int | None
    cache_retained: int | None


class NoshowDay(Struct, kw_only=True):
    day: Annotated[str, Meta(description="local date, YYYY-MM-DD")]
    booked: int
    present: int


class NoshowRoom(Struct, kw_only=True):
    """Per room and local day: confirmed bookings that started, and how many of them were
    checked in to."""

    room: str
    name: str
    days: list[NoshowDay]
