"""One typed message per PROTOCOL.md payload, with strict decoding.

Decoding is strict about types and constraints (a wrong type, a bad identifier, a
missing required field is refused with the JSON path of the offending field) and
tolerant of unknown fields, because PROTOCOL.md lets implementations add fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET as UNSET  # noqa: PLC0414  (re-exported: m.UNSET)
from msgspec import Meta, Struct, UnsetType, field

from .codec import PATH_RE

# Re-exported (explicitly, for mypy): callers write m.decode(data, m.Status).
from .codec import check_utf8 as check_utf8  # noqa: PLC0414
from .codec import decode as decode  # noqa: PLC0414
from .codec import encode as encode  # noqa: PLC0414
from .codec import to_builtins as to_builtins  # noqa: PLC0414
from .errors import MALFORMED, WireError
from .topics import IDENT_PATTERN

#: A site, room, door or reader id (wire.topics.IDENT_PATTERN); the configs of both sides use it too.
Ident = Annotated[str, Meta(pattern=IDENT_PATTERN)]
Cred = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
# Every number bounded (a site may send anything; the hub stores numbers in SQLite's signed
# 64-bit integers and shows times as dates): see the bounds below.
#: The highest event seq and cache version (PROTOCOL.md §4: seq at most 2^53; versions are
#: max(previous + 1, now), far below). Exact in a float, hence in any JSON reader.
MAX_SEQ = 2**53
#: The last second a date can show (9999-12-31T23:59:59Z): every time on the wire, int or float.
MAX_TIME = 253_402_300_799
#: Counts and durations (outbox_pending, present, capacity, door.held_open seconds).
MAX_COUNT = 2**31 - 1
Seq = Annotated[int, Meta(ge=1, le=MAX_SEQ)]
Version = Annotated[int, Meta(ge=0, le=MAX_SEQ)]
UnixTime = Annotated[int, Meta(ge=0, le=MAX_TIME)]
#: Finite by construction: JSON has no NaN or Infinity, and 1e400 is refused as out of range.
UnixTimeF = Annotated[float, Meta(ge=0, le=MAX_TIME)]
Text = Annotated[str, Meta(max_length=256)]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=256)]
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
#: A site's event stream (PROTOCOL.md §4): 32 lower-case hex chars, made once with its outbox.
StreamId = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
#: A stream in an ``event/ack``: a StreamId, or "" for the legacy stream (no stream in events).
AckStream = Annotated[str, Meta(pattern=r"^(?:[0-9a-f]{32})?$")]
StreamBase = Annotated[int, Meta(ge=1, le=MAX_SEQ)]

# Every struct is keyword-only and immutable; unknown fields are ignored on decode.


# --- hub -> site bodies (inside signed envelopes) -----------------------------------


class Entry(Struct, kw_only=True, frozen=True):
    """One grant in a site cache: a credential hash allowed through some doors."""

    id: NonEmpty
    cred: Cred
    doors: list[Ident]
    from_: UnixTime | None = field(default=None, name="from")
    until: UnixTime | None = None
    who: Text
    ref: Text | None = None
    room: Ident | None = None

    def __post_init__(self) -> None:
        if self.from_ is not None and self.until is not None and self.from_ > self.until:
            raise ValueError(f"entry {self.id!r}: from ({self.from_}) is after until ({self.until})")


_entry_decoder = msgspec.json.Decoder(Entry)


def _unique_ids(entries: list[Entry]) -> None:
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            raise ValueError(f"entry id {e.id!r} appears twice")
        seen.add(e.id)


class Body(Struct, tag_field="type", kw_only=True, frozen=True):
    """Base of everything the hub signs for a site."""

    site: Ident
    issued_at: UnixTime
    expires_at: UnixTime


class CacheFull(Body, tag="cache.full", kw_only=True, frozen=True):
    version: Version
    entries: list[Entry]

    def __post_init__(self) -> None:
        _unique_ids(self.entries)


class CacheDelta(Body, tag="cache.delta", kw_only=True, frozen=True):
    version: Version
    base_version: Version
    upsert: list[Entry]
    remove: list[NonEmpty]

    def __post_init__(self) -> None:
        if self.version <= self.base_version:
            raise ValueError(f"version {self.version} is not after base_version {self.base_version}")
        _unique_ids(self.upsert)


class CacheFullStream(Body, tag="cache.full", kw_only=True, frozen=True):
    """The same ``cache.full`` on the wire, with its entries left undecoded: a site
    decodes them one at a time while it inserts them (``iter_entries``), so that applying
    100,000 entries never holds 100,000 entry objects. Duplicate ids are left to the
    store (a primary key) to find."""

    version: Version
    entries: list[msgspec.Raw]

    def iter_entries(self) -> Iterator[Entry]:
        """Each entry, validated like ``Entry``; WireError(malformed) names ``$.entries[i]...``."""
        for i, raw in enumerate(self.entries):
            try:
                yield _entry_decoder.decode(raw)
            except msgspec.ValidationError as exc:
                msg = str(exc)
                m = PATH_RE.search(msg)
                path = f"$.entries[{i}]" + (m.group(1)[1:] if m else "")
                raise WireError(MALFORMED, PATH_RE.sub("", msg) + f" - at `{path}`", field=path) from None


Action = Literal["unlock", "lockdown", "lockdown_end", "checkout_all", "enroll"]


class Command(Body, tag="command", kw_only=True, frozen=True):
    id: NonEmpty
    action: Action
    door: Ident | None = None
    seconds: Annotated[int, Meta(ge=1, le=86400)] | None = None
    room: Ident | None = None
    reader: Ident | None = None

    def __post_init__(self) -> None:
        if self.action == "unlock" and self.door is None:
            raise ValueError("unlock needs a door")
        if self.action == "enroll":
            if self.reader is None:
                raise ValueError("enroll needs a reader")
            if self.seconds is None or self.seconds > 120:
                raise ValueError("enroll needs seconds between 1 and 120")


SignedBody = CacheFull | CacheDelta | Command
#: What a site decodes: a cache.full with its entries still raw (see CacheFullStream).
SignedBodyStream = CacheFullStream | CacheDelta | Command


# --- site -> hub ---------------------------------------------------------------------


class Event(Struct, tag_field="type", kw_only=True, frozen=True):
    """Common fields of every event (PROTOCOL.md §4). ``stream`` is absent only from events of
    a site from before streams (the legacy stream ""). ``stream_base`` (an added field) comes
    from an outbox upgraded from before streams: the stream continues the site's legacy
    numbering after that seq (hub/ingest.py has the rule)."""

    id: NonEmpty
    site: Ident
    stream: StreamId | UnsetType = UNSET
    stream_base: StreamBase | UnsetType = UNSET
    seq: Seq
    boot: Text
    ts: UnixTimeF
    clock_synced: bool

    @property
    def type(self) -> str:
        """The event type (the ``type`` tag on the wire)."""
        return str(self.__struct_config__.tag)


GrantReason = Literal["booking", "standing", "exit_button", "command"]
DenyReason = Literal[
    "unknown_credential",
    "outside_window",
    "wrong_door",
    "cache_expired",
    "clock_untrusted",
    "lockdown",
    "rate_limited",
]
OccupancyReason = Literal["badge", "booking_ended", "command", "daily_reset"]


class AccessGranted(Event, tag="access.granted", kw_only=True, frozen=True):
    """``cache_version`` (an added field): the cache version the decision was read from
    (None: no cache, or no cache consulted: exit button, command); ``ts`` and
    ``clock_synced`` are the time and the clock verdict the decision used."""

    door: Ident
    cred: Cred | None
    who: Text | None
    ref: Text | None
    reason: GrantReason
    cache_version: Version | None = None


class AccessDenied(Event, tag="access.denied", kw_only=True, frozen=True):
    """``cache_version``, ``ts`` and ``clock_synced`` as in AccessGranted."""

    door: Ident
    cred: Cred | None
    reason: DenyReason
    cache_version: Version | None = None


class DoorOpened(Event, tag="door.opened", kw_only=True, frozen=True):
    door: Ident


class DoorClosed(Event, tag="door.closed", kw_only=True, frozen=True):
    door: Ident


class DoorForcedOpen(Event, tag="door.forced_open", kw_only=True, frozen=True):
    door: Ident


class DoorHeldOpen(Event, tag="door.held_open", kw_only=True, frozen=True):
    door: Ident
    seconds: Annotated[float, Meta(ge=0, le=MAX_COUNT)]


class OccupancyCheckin(Event, tag="occupancy.checkin", kw_only=True, frozen=True):
    room: Ident
    who: Text
    ref: Text | None
    reason: OccupancyReason


class OccupancyCheckout(Event, tag="occupancy.checkout", kw_only=True, frozen=True):
    room: Ident
    who: Text
    ref: Text | None
    reason: OccupancyReason


class CacheApplied(Event, tag="cache.applied", kw_only=True, frozen=True):
    version: Version | None
    error: Text | None = None


class CacheRejected(Event, tag="cache.rejected", kw_only=True, frozen=True):
    version: Version | None
    error: Text | None


class CommandExecuted(Event, tag="command.executed", kw_only=True, frozen=True):
    """``id`` is the event's own id; the command's id travels in ``command``
    (as in ``enroll.read``), since one JSON object cannot hold two ``id`` keys."""

    command: NonEmpty
    action: Text
    error: Text | None = None


class CommandRejected(Event, tag="command.rejected", kw_only=True, frozen=True):
    command: NonEmpty | None
    action: Text | None
    error: Text | None


class ReaderError(Event, tag="reader.error", kw_only=True, frozen=True):
    reader: Ident
    error: Text


class ReaderTamper(Event, tag="reader.tamper", kw_only=True, frozen=True):
    reader: Ident


class ReaderOnline(Event, tag="reader.online", kw_only=True, frozen=True):
    reader: Ident


class ReaderOffline(Event, tag="reader.offline", kw_only=True, frozen=True):
    reader: Ident


class EnrollRead(Event, tag="enroll.read", kw_only=True, frozen=True):
    reader: Ident
    command: NonEmpty
    sealed: Annotated[str, Meta(max_length=4096)]


class SystemStarted(Event, tag="system.started", kw_only=True, frozen=True):
    software: Text


class SystemStopping(Event, tag="system.stopping", kw_only=True, frozen=True):
    software: Text


class ClockTrusted(Event, tag="clock.trusted", kw_only=True, frozen=True):
    detail: Text


class ClockUntrusted(Event, tag="clock.untrusted", kw_only=True, frozen=True):
    detail: Text


AnyEvent = (
    AccessGranted
    | AccessDenied
    | DoorOpened
    | DoorClosed
    | DoorForcedOpen
    | DoorHeldOpen
    | OccupancyCheckin
    | OccupancyCheckout
    | CacheApplied
    | CacheRejected
    | CommandExecuted
    | CommandRejected
    | ReaderError
    | ReaderTamper
    | ReaderOnline
    | ReaderOffline
    | EnrollRead
    | SystemStarted
    | SystemStopping
    | ClockTrusted
    | ClockUntrusted
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls
    for cls in AnyEvent.__args__
}


class Status(Struct, kw_only=True, frozen=True):
    """Retained site status; also the Last Will (``state`` = offline)."""

    state: Literal["online", "offline"]
    ts: UnixTimeF = 0.0
    boot: Text = ""
    software: Text = ""
    cache_version: Version | None = None
    cache_expires_at: UnixTime | None = None
    clock_synced: bool = False
    outbox_pending: Count = 0
    lockdown: bool = False
    #: The site's event stream (PROTOCOL.md §4); absent from sites from before streams.
    stream: StreamId | UnsetType = UNSET
    #: An added field: why the site's local storage fails (e.g. the disk is full), None
    #: while it works. The site keeps deciding from its cache meanwhile.
    storage_error: Annotated[str, Meta(max_length=512)] | None = None


class DoorState(Struct, kw_only=True, frozen=True):
    door: Ident
    locked: bool
    open: bool | None
    alarm: Literal["held_open", "forced_open"] | None
    mode: Literal["normal", "office_hours", "lockdown"]
    ts: UnixTimeF


class RoomOccupancy(Struct, kw_only=True, frozen=True):
    present: Count
    capacity: Count | None
    who: list[Text]


class Occupancy(Struct, kw_only=True, frozen=True):
    ts: UnixTimeF
    rooms: dict[Ident, RoomOccupancy]


class EventAck(Struct, kw_only=True, frozen=True):
    """Every event of stream ``stream`` with seq ≤ ``upto`` is stored; ``stream`` is absent
    in an ack of a hub from before streams (one numbering per site)."""

    stream: AckStream | UnsetType = UNSET
    upto: Annotated[int, Meta(ge=0, le=MAX_SEQ)]


class CacheAck(Struct, kw_only=True, frozen=True):
    version: Version | None
    ok: bool
    error: Text | None
    ts: UnixTimeF


class CommandAck(Struct, kw_only=True, frozen=True):
    id: Text
    ok: bool
    error: Text | None
    ts: UnixTimeF


# --- booking platform (PROTOCOL.md §5) -------------------------------------------------

AwareTime = Annotated[datetime, Meta(tz=True)]


class Booking(Struct, kw_only=True, frozen=True):
    id: NonEmpty
    resource_id: NonEmpty
    member_id: NonEmpty
    start: AwareTime
    end: AwareTime
    status: Literal["confirmed", "cancelled"]
    updated_at: AwareTime
    pin: Annotated[str, Meta(pattern=r"^[0-9]{4,12}$")] | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"booking {self.id!r}: end is not after start")


class BookingPage(Struct, kw_only=True, frozen=True):
    """One page; items stay raw so that one bad booking can be skipped, not the page."""

    items: list[msgspec.Raw]
    next_page_token: str | None = None
