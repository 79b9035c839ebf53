"""Records of the hub store's event streams (``store_streams``), re-exported by
``store_types``: a batch to store, its outcome, a stream's state, a quarantined message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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
