"""Reading an event leniently (PROTOCOL.md §4): a hub stores and acknowledges every event
whose common fields are valid, whatever its type and extra fields (a newer site may send
types an older hub does not know), and acknowledges a message on ``event`` that is not even
that when its stream and seq can be read."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

from .fields import Ident, NonEmpty, Seq, StreamBase, StreamId, Text, UnixTimeF

#: An event type as a hub reads it before it knows the type.
EventTypeName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class EventHead(Struct, kw_only=True, frozen=True):
    """The common fields of an event of any type (``clock_synced`` may be missing here)."""

    id: NonEmpty
    site: Ident
    stream: StreamId | UnsetType = UNSET
    stream_base: StreamBase | UnsetType = UNSET
    seq: Seq
    boot: Text
    ts: UnixTimeF
    type: EventTypeName
    clock_synced: bool = False


class EventPlace(Struct, kw_only=True, frozen=True):
    """Where a message on ``event`` belongs, if that can be read: its stream (absent: the
    legacy stream) and seq. Everything else in it is ignored."""

    stream: StreamId | UnsetType = UNSET
    seq: Seq
