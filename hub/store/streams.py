"""Records of what sites report beyond their state: a batch of events to store, its outcome,
a stream's state, a quarantined message, the counts of refused messages; and how a site's
streams are shown to people (``stream_notes``, ``short``). Re-exported by ``hub.store``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Bytes kept of a message quarantined from a site's ``event`` topic (the rest is cut off).
QUARANTINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One event of a batch for ``store_batch``: its common fields and payload as it came.
    ``known`` is False for an event whose type (or a type-specific field) this hub does
    not know: it is stored and acknowledged all the same, and counted."""

    stream: str
    seq: int
    id: str
    type: str
    ts: float
    payload: str
    known: bool = True


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message on a site's ``event`` topic that is not an event: kept aside as it came
    (truncated), with ``why``; ``stream`` and ``seq`` when they could be read (stream ""
    when absent: the legacy stream), and then that seq counts as received."""

    why: str
    payload: bytes
    stream: str | None = None
    seq: int | None = None
    #: When the hub received it (filled when read back from the store).
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class EventBatch:
    """What ``store_batch`` stores in one transaction. ``bases``: per stream the largest
    ``stream_base`` its events declared (an outbox upgraded from before streams)."""

    events: Sequence[IncomingEvent] = ()
    quarantined: Sequence[Quarantined] = ()
    bases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamState:
    """A site's event stream at the hub. Every seq ``base + 1 .. acked_upto`` of it is
    stored (or quarantined); ``base`` > 0 only for a stream that continues the site's
    legacy numbering (see hub/ingest.py)."""

    site_id: str
    stream: str
    base: int
    acked_upto: int
    max_seq: int
    gaps: tuple[tuple[int, int], ...]
    #: When the hub first saw it (None: the legacy stream, from before streams).
    first_seen: float | None
    last_seen: float | None


@dataclass(frozen=True, slots=True)
class BatchStored:
    """Outcome of ``store_batch``: per stream of the batch, its state after it; the (stream,
    seq) of the events newly stored; how many events of unknown type and quarantined
    messages it kept."""

    streams: dict[str, StreamState]
    new: frozenset[tuple[str, int]]
    unknown: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """How often the hub refused messages of one kind from one site, and the last one."""

    site_id: str
    #: ``topic:reason``, e.g. ``event:too_large``, ``occupancy:unknown_room``.
    kind: str
    count: int
    last_at: float
    last_reason: str


def stream_notes(current: str, streams: Sequence[StreamState]) -> dict[str, Any]:
    """What to tell an admin about a site's streams (``torwart-hub sites``, the dashboard):
    the current stream; when it is a new stream beside an older one, ``reset_at`` (when the
    hub first saw it), and the stream before it with its ``acked_upto``; when it continues
    the site's legacy numbering (an upgraded outbox), ``continues_after``."""
    notes: dict[str, Any] = {"stream": current, "reset_at": None, "previous": None, "previous_acked": None,
                             "continues_after": None}
    names = [s.stream for s in streams]
    if current not in names:
        return notes
    i = names.index(current)
    cur = streams[i]
    if cur.base:
        notes["continues_after"] = cur.base
    elif i > 0:
        prev = streams[i - 1]
        notes.update(reset_at=cur.first_seen, previous=prev.stream, previous_acked=prev.acked_upto)
    return notes


def short(stream: str) -> str:
    """A stream id as shown to people: its first 8 hex chars, or "legacy" for ""."""
    return f"{stream[:8]}…" if stream else "legacy"
