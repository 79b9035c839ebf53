"""What sites send, into the store: validated against the wire types, each event stored
once per (site, seq), and acknowledged up to the highest seq stored without a gap.

A malformed message is logged and dropped; it never stops the hub. A message whose body
names another site than its topic is dropped too (the broker ACL already prevents it; the
hub checks anyway).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from wire import messages as m
from wire.errors import WireError

from .store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class IngestStats:
    events_new: int = 0
    events_duplicate: int = 0
    dropped: int = 0
    batches: int = 0
    gaps: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)


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

    def __init__(self, store: Store, ack: Callable[[str, int], object],
                 on_event: Callable[[str, m.Event], None] | None = None) -> None:
        self.store = store
        self._ack = ack
        self._on_event = on_event
        self.stats = IngestStats()

    def events(self, site: str, payloads: list[bytes]) -> int:
        """Store a batch of one site's event messages in one transaction and ack; return
        the acked_upto (sent as the ack when the batch held anything valid)."""
        rows = []
        decoded: list[m.Event] = []
        for raw in payloads:
            try:
                ev: m.Event = m.decode(raw, m.AnyEvent)
            except WireError as exc:
                self.stats.dropped += 1
                log.warning("site %s: malformed event dropped: %s", site, exc)
                continue
            if ev.site != site:
                self.stats.dropped += 1
                log.warning("site %s: event claims site %r; dropped", site, ev.site)
                continue
            rows.append((ev.seq, ev.id, ev.type, ev.ts, raw.decode("utf-8")))
            decoded.append(ev)
        state = self.store.site_state(site)
        before = state.acked_upto if state is not None else 0
        if not rows:
            # Nothing valid: no write (a flood of garbage must not cost a durable transaction
            # each, nor count as a sign of life of the site), and nothing to acknowledge.
            return before
        stored = self.store.store_events(site, rows, received_at=time.time())
        self.stats.batches += 1
        self.stats.events_new += stored.new
        self.stats.events_duplicate += len(rows) - stored.new
        if stored.gaps:
            self.stats.gaps[site] = stored.gaps
        else:
            self.stats.gaps.pop(site, None)
        self._ack(site, stored.acked_upto)
        if self._on_event is not None and stored.new:
            for ev in decoded:
                if ev.seq > before:  # a replay of something already stored has been handled
                    self._on_event(site, ev)
        return stored.acked_upto

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
