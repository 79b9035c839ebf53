"""Brings every site from the cache version it holds to the latest one.

Each site always has a retained ``cache.full`` on its ``cache`` topic (a freshly
installed site gets it on subscribe); it is republished when the changes since it
outgrow a fraction of its size. A site that reports an older version (status or ack)
gets a ``cache.delta`` from exactly that version, or a new full when it is too far
behind or answers ``base_mismatch``. A sent delta is not repeated until it was refused
or ``resend_seconds`` passed without an ack.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from wire.topics import Kind

from .caches import CacheManager
from .link import HubLink

log = logging.getLogger(__name__)


@dataclass
class _Sent:
    base: int | None
    version: int
    at: float


class Publisher:
    """Used from the hub's main loop thread only."""

    def __init__(self, caches: CacheManager, link: HubLink, *, resend_seconds: float = 30.0) -> None:
        self.caches = caches
        self.link = link
        self.resend_seconds = resend_seconds
        self._sent: dict[str, _Sent] = {}
        self.fulls = 0
        self.deltas = 0

    def publish_full(self, site: str) -> int:
        """Publish the latest version as the retained cache.full; return its version."""
        body = self.caches.full_body(site)
        if self.link.publish(site, Kind.CACHE, self.caches.signed(body), retain=True):
            self.caches.mark_retained_full(site, body.version)
            self._sent[site] = _Sent(None, body.version, time.monotonic())
            self.fulls += 1
            log.info("site %s: published cache.full version %d (%d entries, retained)", site, body.version,
                     len(body.entries))
        return body.version

    def converge(self, site: str, reported: int | None, *, force_full: bool = False) -> None:
        """Send what ``site``, holding version ``reported``, needs to reach the latest."""
        latest = self.caches.latest_version(site)
        if latest is None:
            return
        state = self.caches.store.cache_state(site)
        if force_full or state is None or state.retained_version is None or self.caches.needs_new_retained_full(site):
            self.publish_full(site)
            return
        if reported is None or reported == latest:
            return
        if reported > latest:
            # The site holds a version the hub never issued (store restored from a backup):
            # issue one above it, or the site would refuse everything as stale.
            self.caches.rebuild(site, int(time.time()), min_version=reported)
            self.publish_full(site)
            return
        sent = self._sent.get(site)
        if sent is not None and sent.base == reported and sent.version == latest \
                and time.monotonic() - sent.at < self.resend_seconds:
            return  # already on its way
        delta = self.caches.delta_body(site, reported)
        if delta is None:
            if state.retained_version == latest and sent is not None and sent.base is None \
                    and time.monotonic() - sent.at < self.resend_seconds:
                return  # the retained full of the latest version is on its way
            self.publish_full(site)
            return
        if self.link.publish(site, Kind.CACHE_DELTA, self.caches.signed(delta)):
            self._sent[site] = _Sent(reported, delta.version, time.monotonic())
            self.deltas += 1
            log.info("site %s: published cache.delta %d→%d (+%d -%d)", site, reported, delta.version,
                     len(delta.upsert), len(delta.remove))

    def refused(self, site: str, error: str | None, reported: int | None) -> None:
        """A site refused what we sent: base_mismatch (or anything but stale) → a new full."""
        self._sent.pop(site, None)
        if error == "stale_version":
            return  # it already holds that version or a newer one; its status will say which
        self.converge(site, reported, force_full=True)
