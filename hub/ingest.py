"""What sites send, into the store: validated against the wire types, each event stored
once per (site, stream, seq), and acknowledged per stream up to the highest seq stored
without a gap (PROTOCOL.md §4).

Events (``Ingest.events``):

- An event whose common fields are valid (``wire.lenient.EventHead``: id, site, stream,
  seq, boot, ts, type) is stored and acknowledged whatever its type and other fields. One
  this hub cannot decode as a known type (a newer site's type, or a field value this hub
  does not know) is stored as it came, counted per site (``unknown_types``) and handed to
  no hook.
- Anything else on the ``event`` topic (not JSON, common fields missing or wrong, a body
  naming another site than its topic) is quarantined: kept aside, counted per site
  (``quarantined``). When its stream and seq can be read (``EventPlace``), that seq counts
  as received, so it never holds back the acknowledgement of the events after it and the
  site's outbox drains. Nothing is dropped silently.
- Acks: one ``{"stream": S, "upto": N}`` per stream in the batch.

Streams and upgrades (the rule, also in README "Design notes"):

- An event without ``stream`` comes from a site from before streams: it belongs to the
  legacy stream "" of its site, which continues that site's numbering as the hub kept it
  before streams (the store migration filed every event stored so far under it), and is
  acknowledged as ``{"stream": "", "upto": N}`` (an old site ignores the unknown field).
- A stream the hub has not seen for the site starts at seq 1 and is stored in full: a
  reinstalled site (a new outbox) loses nothing, and the hub shows it as "site was reset".
- Except when its events carry ``stream_base`` (an added field): an outbox made before
  streams and upgraded keeps its numbering, and says so. Such a stream continues the legacy
  stream: it starts after max(``stream_base``, the legacy stream's ``acked_upto``).
  ``stream_base`` is what the site knows was stored under its legacy numbering (its
  acknowledged seq at the upgrade, raised by every ack without a stream, i.e. of a hub from
  before streams, which stored the new stream's events under the site's one numbering); the
  legacy stream's ``acked_upto`` is what this hub knows. The site declares the
  continuation, so the hub never guesses it from the order in which events arrive: the
  seq a fresh stream is first seen at (2, when 1 is still on its way through another hub
  worker) cannot make the hub skip anything, and garbage counted in the legacy stream
  cannot either.

What the site does with acks is in edge/outbox.py: it applies an ack of its own stream,
and one without a stream (from a hub from before streams, to its one numbering); it ignores
one naming another stream.

A malformed status, door state, occupancy or ack is logged and dropped; it never stops the
hub. A door state for another door than its topic is dropped too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from wire import lenient
from wire import messages as m
from wire.errors import WireError

from .store import QUARANTINE_BYTES, EventBatch, IncomingEvent, Quarantined, Store

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class IngestStats:
    events_new: int = 0
    events_duplicate: int = 0
    #: Non-event messages dropped as malformed (statuses, door states, acks, ...).
    dropped: int = 0
    #: Messages on ``event`` kept aside, and events stored of types this hub does not know.
    quarantined: int = 0
    unknown_types: int = 0
    batches: int = 0
    #: Per (site, stream): the missing seq ranges, while there are any.
    gaps: dict[tuple[str, str], tuple[tuple[int, int], ...]] = field(default_factory=dict)


def _place(raw: bytes) -> tuple[str | None, int | None]:
    """(stream, seq) of a message that is not an event, where they can be read."""
    try:
        p: lenient.EventPlace = m.decode(raw, lenient.EventPlace)
    except WireError:
        return None, None
    return ("" if p.stream is m.UNSET else p.stream), p.seq


class Ingest:
    """Used from the hub's main loop thread only (it owns the store connection)."""

    def _decode(self, site: str, raw: bytes, type_: type[T], what: str) -> T | None:
        """``raw`` as ``type_``, or None after logging and counting a malformed message."""
        try:
            msg: T = m.decode(raw, type_)
            return msg
        except WireError as exc:
            self.stats.dropped += 1
            log.warning("site %s: malformed %s dropped: %s", site, what, exc)
            return None

    def __init__(self, store: Store, ack: Callable[[str, str, int], object],
                 on_event: Callable[[str, m.Event], None] | None = None) -> None:
        """``ack(site, stream, upto)`` publishes an ``event/ack``; ``on_event(site, event)``
        sees every newly stored event of a known type, once."""
        self.store = store
        self._ack = ack
        self._on_event = on_event
        self.stats = IngestStats()

    def _quarantine(self, site: str, raw: bytes, why: str) -> Quarantined:
        stream, seq = _place(raw)
        self.stats.quarantined += 1
        log.warning("site %s: message on the event topic quarantined (stream %r, seq %s): %s", site, stream, seq,
                    why)
        return Quarantined(why=why, payload=raw[:QUARANTINE_BYTES], stream=stream, seq=seq)

    def events(self, site: str, payloads: list[bytes]) -> dict[str, int]:
        """Store a batch of one site's event messages in one transaction and acknowledge
        every stream it touched; return stream → acked_upto (what was sent)."""
        incoming: list[IncomingEvent] = []
        quarantined: list[Quarantined] = []
        bases: dict[str, int] = {}
        decoded: dict[tuple[str, int], m.Event] = {}
        for raw in payloads:
            ev: m.Event | None = None
            try:
                ev = m.decode(raw, m.AnyEvent)
                head: m.Event | lenient.EventHead = ev
            except WireError as exc:
                try:
                    head = m.decode(raw, lenient.EventHead)
                except WireError:
                    quarantined.append(self._quarantine(site, raw, str(exc)))
                    continue
                log.info("site %s: event of a type or with fields this hub does not know, stored as it came: %s",
                         site, exc)
            if head.site != site:
                quarantined.append(self._quarantine(site, raw, f"the event names site {head.site!r}"))
                continue
            if head.stream_base is not m.UNSET and head.stream_base >= head.seq:
                quarantined.append(self._quarantine(site, raw, f"seq {head.seq} is not after its stream_base "
                                                               f"{head.stream_base}"))
                continue
            stream = "" if head.stream is m.UNSET else head.stream
            if head.stream_base is not m.UNSET:
                bases[stream] = max(bases.get(stream, 0), head.stream_base)
            incoming.append(IncomingEvent(stream, head.seq, head.id, head.type, head.ts, raw.decode("utf-8"),
                                          known=ev is not None))
            if ev is not None:
                decoded.setdefault((stream, ev.seq), ev)
        if not incoming and not quarantined:
            return {}
        stored = self.store.store_batch(site, EventBatch(events=incoming, quarantined=quarantined, bases=bases),
                                        received_at=time.time())
        self.stats.batches += 1
        self.stats.events_new += len(stored.new)
        self.stats.events_duplicate += len(incoming) - len(stored.new)
        self.stats.unknown_types += stored.unknown
        acks: dict[str, int] = {}
        for name, st in sorted(stored.streams.items()):
            if st.gaps:
                self.stats.gaps[(site, name)] = st.gaps
            else:
                self.stats.gaps.pop((site, name), None)
            self._ack(site, name, st.acked_upto)
            acks[name] = st.acked_upto
        if self._on_event is not None:
            for key in sorted(stored.new):
                if key in decoded:  # a replay of something already stored has been handled
                    self._on_event(site, decoded[key])
        return acks

    def status(self, site: str, raw: bytes) -> m.Status | None:
        st = self._decode(site, raw, m.Status, "status")
        if st is None:
            return None
        self.store.record_status(site, st, time.time())
        return st

    def door(self, site: str, door: str | None, raw: bytes) -> bool:
        st = self._decode(site, raw, m.DoorState, "door state")
        if st is None:
            return False
        if st.door != door:
            self.stats.dropped += 1
            log.warning("site %s: door state for %r on the topic of %r; dropped", site, st.door, door)
            return False
        return self.store.upsert_door_state(site, st.door, raw.decode("utf-8"), st.ts)

    def occupancy(self, site: str, raw: bytes) -> bool:
        occ = self._decode(site, raw, m.Occupancy, "occupancy")
        if occ is None:
            return False
        return self.store.upsert_occupancy(site, raw.decode("utf-8"), occ.ts)

    def cache_ack(self, site: str, raw: bytes) -> m.CacheAck | None:
        ack = self._decode(site, raw, m.CacheAck, "cache ack")
        if ack is None:
            return None
        if ack.ok:
            self.store.update_site_state(site, {"cache_version": ack.version})
        else:
            log.warning("site %s refused cache version %s: %s", site, ack.version, ack.error)
        return ack

    def command_ack(self, site: str, raw: bytes) -> m.CommandAck | None:
        ack = self._decode(site, raw, m.CommandAck, "command ack")
        if ack is None:
            return None
        log.info("site %s: command %s %s%s", site, ack.id, "done" if ack.ok else "refused: ",
                 "" if ack.ok else ack.error)
        return ack
