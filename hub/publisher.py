"""Brings every site from the cache version it holds to the latest one.

Each site always has a retained ``cache.full`` on its ``cache`` topic (a freshly
installed site gets it on subscribe); it is republished when the changes since it
outgrow a fraction of its size. A site that reports an older version (status or ack)
gets a ``cache.delta`` from exactly that version, or a new full when it is too far
behind or answers ``base_mismatch``. What was sent (a delta, or a full of the latest version) is
not sent again until it was refused or ``resend_seconds`` passed without an ack; a site
that refuses again within ``resend_seconds`` of a full sent for its last refusal (its disk
is full, its size limit or hub key is wrong) gets the next attempt only after that time,
so that a site which cannot apply anything is not flooded with caches in a tight loop.

A site that reports a version above the latest gets a new version above it (the hub's
store was restored from an older backup), but only up to ``VERSION_AHEAD`` above the
hub's clock or latest version: versions are ``max(previous + 1, now)``, so no version the
hub issued is further ahead, and a site cannot push the hub's counter to the wire's bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from wire.topics import Kind

from .caches import CacheManager
from .link import HubLink
from .outage import log_failure, store_outage

log = logging.getLogger(__name__)

#: How far above the hub's clock (or its latest version, if that is higher) a version a
#: site reports may be for the hub to take it as one it issued: a day's worth of versions
#: issued faster than one per second.
VERSION_AHEAD = 86400


@dataclass(frozen=True)
class Published:
    """A cache.full put out (``publish_full``): its version, and whether it was sent (False:
    the link was down, nothing went out)."""

    version: int
    sent: bool


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
        self._forced: dict[str, float] = {}  # site → when a refusal last got a full at once
        self.fulls = 0
        self.deltas = 0
        self.held_off = 0
        self._marks: list[tuple[str, int]] | None = None  # retained fulls to record (``batched``)

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Within the block, the retained cache.fulls that ``publish_full`` puts out are
        recorded as retained at its end, in one store transaction, instead of one
        transaction each. A record that fails (or is lost in a crash before the end) only
        makes the hub publish that site's full once more later (the store still names the
        older retained version), as when a publish is not recorded today."""
        if self._marks is not None:
            yield
            return
        self._marks = []
        try:
            yield
        finally:
            marks, self._marks = self._marks, None
            self._record_marks(marks)

    def _record_marks(self, marks: list[tuple[str, int]]) -> None:
        if not marks:
            return
        try:
            with self.caches.store.batch():
                for site, version in marks:
                    try:
                        with self.caches.store.batch():
                            self.caches.mark_retained_full(site, version)
                    except Exception as exc:
                        if store_outage(exc):  # the whole batch is lost: the other sites would fail alike
                            raise
                        log.exception("site %s: recording retained cache.full %d failed", site, version)
        except Exception as exc:
            log_failure(log, exc, "recording %d retained cache.fulls failed; they are published again later",
                        len(marks))

    def publish_full(self, site: str) -> Published:
        """Publish the latest version as the retained cache.full, and record it as such
        when it went out."""
        body = self.caches.full_body(site)
        sent = self.link.publish(site, Kind.CACHE, self.caches.signed(body), retain=True)
        if sent:
            if self._marks is None:
                self.caches.mark_retained_full(site, body.version)
            else:
                self._marks.append((site, body.version))
            self._sent[site] = _Sent(None, body.version, time.monotonic())
            self.fulls += 1
            log.info("site %s: published cache.full version %d (%d entries, retained)", site, body.version,
                     len(body.entries))
        return Published(body.version, sent)

    def unissued(self, site: str, reported: int | None) -> str | None:
        """Why ``reported`` cannot be a version the hub issued to ``site`` (more than
        VERSION_AHEAD above both the hub's clock and its latest version), or None."""
        if reported is None:
            return None
        limit = max(self.caches.latest_version(site) or 0, int(time.time())) + VERSION_AHEAD
        return f"version {reported} is above {limit}, the highest the hub can have issued" \
            if reported > limit else None

    def converge(self, site: str, reported: int | None, *, force_full: bool = False) -> None:
        """Send what ``site``, holding version ``reported``, needs to reach the latest.
        A ``reported`` version the hub cannot have issued (``unissued``) is ignored."""
        latest = self.caches.latest_version(site)
        if latest is None:
            return
        if self.unissued(site, reported) is not None:
            log.info("site %s reports cache version %s, which the hub never issued; ignored", site, reported)
            reported = None
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
        if sent is not None and sent.version == latest and sent.base in (reported, None) \
                and time.monotonic() - sent.at < self.resend_seconds:
            return  # already on its way: a delta from this version, or the latest full
        delta = self.caches.delta_body(site, reported)
        if delta is None:
            self.publish_full(site)
            return
        if self.link.publish(site, Kind.CACHE_DELTA, self.caches.signed(delta)):
            self._sent[site] = _Sent(reported, delta.version, time.monotonic())
            self.deltas += 1
            log.info("site %s: published cache.delta %d→%d (+%d -%d)", site, reported, delta.version,
                     len(delta.upsert), len(delta.remove))

    def refused(self, site: str, error: str | None, reported: int | None, version: int | None) -> None:
        """A site refused cache ``version``: base_mismatch (or anything but stale) → a new
        full, at once the first time, after ``resend_seconds`` if it refuses again before
        then. A refusal naming no version (None) was of an envelope the site could not
        open (a forgery, another site's cache, garbage): nothing we sent, so nothing is
        resent for it, or anyone who can publish there could make the hub send fulls."""
        if version is None:
            log.info("site %s refused an envelope it could not open (%s); not ours to resend", site, error)
            return
        self._sent.pop(site, None)
        if error == "stale_version":
            return  # it already holds that version or a newer one; its status will say which
        now = time.monotonic()
        last = self._forced.get(site)
        if last is not None and now - last < self.resend_seconds:
            latest = self.caches.latest_version(site)
            if latest is not None:
                # Counts as sent: converge() waits resend_seconds before the next attempt.
                self._sent[site] = _Sent(reported, latest, now)
            self.held_off += 1
            log.warning("site %s refused its cache again (%s); next attempt in %.0f s", site, error,
                        self.resend_seconds - (now - last))
            return
        self._forced[site] = now
        self.converge(site, reported, force_full=True)
