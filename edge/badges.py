"""The unlock path, which never touches the network (ARCHITECTURE.md): a credential read
at a reader → keyed hash → indexed cache lookup → decide → relay and reader feedback →
event (committed to the outbox after the relay is driven) → occupancy.

Runs on the agent's main loop, which alone uses the cache and state connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from readers import Reader
from wire.creds import cred_hash, redact

from .cache import CacheStore
from .clock import ClockJudge, ClockSource
from .config import ReaderSection
from .decide import decide
from .door import Door
from .limiter import DurableLimiter
from .occupancy import Emit, Occupancy

log = logging.getLogger(__name__)


class BadgePath:
    """Decides each badge from the local cache and acts on the decision. ``readers`` may
    fill in later (the agent starts them after this is made); an enroll command waiting at
    a reader takes the read first (``take_enrollment``)."""

    def __init__(self, *, key: bytes, reader_cfg: Mapping[str, ReaderSection], readers: Mapping[str, Reader],
                 doors: Mapping[str, Door], clock: ClockSource, judge: ClockJudge, cache: CacheStore,
                 limiter: DurableLimiter, occupancy: Occupancy, emit: Emit,
                 take_enrollment: Callable[[str, str], bool]) -> None:
        self._key = key
        self._reader_cfg = reader_cfg
        self._readers = readers
        self._doors = doors
        self._clock = clock
        self._judge = judge
        self._cache = cache
        self._limiter = limiter
        self._occupancy = occupancy
        self._emit = emit
        self._take_enrollment = take_enrollment

    def badge(self, reader_id: str, credential: str) -> None:
        rcfg = self._reader_cfg[reader_id]
        if self._take_enrollment(reader_id, credential):
            return
        door = self._doors[rcfg.door]
        cred = cred_hash(self._key, credential)
        now = self._clock.time()
        # The denial budget runs on the monotonic clock: a wall-clock step must not refill it.
        mono = self._clock.monotonic()
        limited = self._limiter.limited(reader_id, mono)
        # Entries and expiry from one snapshot: the worker thread may commit a new cache in between.
        entries, meta = self._cache.lookup_with_meta(cred)
        trusted, _ = self._judge.trusted(meta.newest_issued_at)
        d = decide([] if limited else entries, door=door.id, now=now, cache_expires_at=meta.expires_at,
                   clock_trusted=trusted, mode=door.mode, rate_limited=limited, door_room=door.cfg.room)
        # The event records what the decision was made from: its time, clock verdict and cache version.
        made_from: dict[str, Any] = {"ts": now, "clock_synced": trusted, "cache_version": meta.version}
        if d.granted:
            door.unlock()
            self._feedback(reader_id, True)
            e = d.entry
            self._emit("access.granted", door=door.id, cred=cred, who=e.who if e else None,
                       ref=e.ref if e else None, reason=d.reason, **made_from)
            if e is not None:
                self._occupancy.on_grant(door.cfg.room, rcfg.direction, e.who, e.ref, e.until)
        else:
            door.deny_feedback()
            self._feedback(reader_id, False)
            if d.reason != "rate_limited":
                self._limiter.record_denial(reader_id, mono)
            log.info("denied %s at %s: %s", redact(credential), door.id, d.reason)
            self._emit("access.denied", door=door.id, cred=cred, reason=d.reason, **made_from)

    def _feedback(self, reader_id: str, granted: bool) -> None:
        """Show the decision on a reader that has its own LED/buzzer (OSDP); never waits."""
        fb = getattr(self._readers.get(reader_id), "feedback", None)
        if fb is not None:
            try:
                fb(granted)
            except Exception as exc:  # feedback is a courtesy; the decision stands
                log.warning("reader %s: feedback failed: %s", reader_id, type(exc).__name__)
