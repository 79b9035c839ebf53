"""The events a site sends to the hub (PROTOCOL.md §4): the common fields of every event
and one type per event ``type``, strict like every wire message. ``wire.messages``
re-exports them (``m.AccessGranted``, ``m.AnyEvent``); ``wire.lenient`` reads the common
fields of an event of any type, known or not."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from .fields import MAX_COUNT, Cred, Ident, NonEmpty, Seq, StreamBase, StreamId, Text, UnixTimeF, Version

__all__ = [
    "EVENT_TYPES", "AccessDenied", "AccessGranted", "AnyEvent", "CacheApplied", "CacheRejected", "ClockTrusted",
    "ClockUntrusted", "CommandExecuted", "CommandRejected", "DenyReason", "DoorClosed", "DoorForcedOpen",
    "DoorHeldOpen", "DoorOpened", "EnrollRead", "Event", "GrantReason", "OccupancyCheckin", "OccupancyCheckout",
    "OccupancyReason", "ReaderError", "ReaderOffline", "ReaderOnline", "ReaderTamper", "SystemStarted",
    "SystemStopping",
]


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
