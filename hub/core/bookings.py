"""Bookings from the platform: a sync now (the running hub's schedule, ``torwart-hub
sync``), and a booking the platform pushed (the webhook), each followed by the caches of
the sites it touches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..booking import SyncResult
from ..booking.webhook import MAX_SKEW_SECONDS, SignedPush
from ..errors import SyncError
from ..heap import LARGE_SYNC, release_freed
from ..outage import log_failure
from ..sync import BookingSync, Progress, SyncReport
from .push import Pushing

log = logging.getLogger(__name__)


class Bookings(Pushing):
    """The booking acts (see the module's docstring)."""

    _sync: BookingSync | None
    _sync_thread: threading.Thread | None = None
    #: From a background sync's start until its result was stored (or dropped) on the loop.
    _sync_busy: bool = False

    @property
    def booking_sync(self) -> BookingSync:
        """The sync with the configured platform adapter (built on first use)."""
        if self._sync is None:
            self._sync = BookingSync(self.cfg, self._store)
        return self._sync

    @property
    def platform_writes(self) -> bool:
        """Whether the platform adapter takes check-ins and releases (hub.feedback)."""
        return self.booking_sync.adapter.supports_write

    def sync(self, now: int | None = None, progress: Progress | None = None) -> SyncReport:
        """One booking sync into the store (``progress`` hears each page); the caches of
        ``SyncReport.sites`` are the caller's to bring out (``rebuild``, or ``sync_now``).
        A failing platform is recorded and reported, never raised."""
        return self.booking_sync.run_once(int(time.time()) if now is None else now, progress=progress)

    def sync_now(self) -> SyncReport:
        """The running hub's sync: one sync, then the changed sites' caches go out."""
        report = self.sync()
        if report.ok and report.sites:
            self.changed(set(report.sites))
        return report

    @property
    def sync_reading(self) -> bool:
        """Whether a ``sync_in_background`` is still reading the platform, or its result
        waits on the loop to be stored (a new one would read from the old cursor)."""
        return self._sync_busy

    def sync_in_background(self, done: Callable[[SyncReport | None], object] | None = None,
                           still_leading: Callable[[], bool] | None = None) -> bool:
        """``sync_now`` with the platform read on a thread of its own, so that this hub's
        loop goes on with the sites' messages meanwhile (the running hub's schedule). The
        cursor is read now; when the pages are in, storing them (or recording the
        failure: nothing else changes), bringing out the changed sites' caches and
        ``done(report)`` are posted to the loop (``done(None)`` when that raised). False
        (and nothing starts) while the previous one is still reading. ``still_leading``
        (several nodes): asked before storing; False drops what was read, unstored (another
        node leads now and syncs itself), and ``done(None)``."""
        if self.sync_reading:
            return False
        sync = self.booking_sync
        start = sync.begin(elsewhere=True)

        def finish(fetched: SyncResult | SyncError) -> None:
            report: SyncReport | None = None
            try:
                if still_leading is not None and not still_leading():
                    log.warning("booking sync %s: this node no longer leads; what it read is dropped, not stored",
                                sync.source)
                    return
                report = sync.finish(start, fetched)
                if report.ok and report.sites:
                    self.changed(set(report.sites))
            finally:
                self._sync_busy = False
                if isinstance(fetched, SyncResult) and len(fetched.bookings) >= LARGE_SYNC:
                    # After this turn, when what the sync read is garbage (its threads' arenas).
                    self.post(release_freed)
                if done is not None:
                    done(report)  # None: storing it raised (the loop logs it)

        def read() -> None:
            try:
                fetched: SyncResult | SyncError = sync.fetch(start)
            except Exception as exc:  # a bug or a closed adapter: recorded as a failed sync
                log.exception("booking sync %s: reading the platform failed", sync.source)
                fetched = SyncError(f"{sync.source}: reading the platform failed: {type(exc).__name__}")
            self.post(lambda: finish(fetched))

        self._sync_thread = threading.Thread(target=read, name="booking-sync", daemon=True)
        self._sync_thread.start()
        self._sync_busy = True  # finish, posted to this loop, runs only after this returns
        return True

    def apply_push(self, push: SignedPush) -> dict[str, int] | None:
        """Apply a verified webhook push once: remember its signature and store its booking
        in one transaction, then bring out the caches it changes; site → new version, or
        None when the signature was accepted before (a replay). A push that fails to apply,
        or a hub that dies or loses its store on the way, leaves neither the booking nor its
        signature behind, so that the platform's retry of the same request is applied and
        not taken for a replay. Bringing out the caches comes after the commit: a failure
        there leaves the booking stored (its sites get versions at their next rebuild)."""
        store, now = self._store, time.time()
        # A signature whose timestamp is this far back fails the timestamp check anyway.
        forget_before = int(now) - MAX_SKEW_SECONDS - 60
        with store.batch():
            if not store.remember_webhook_signature(push.signature, ts=push.timestamp, at=now,
                                                    forget_before=forget_before):
                return None
            report = self.booking_sync.apply_webhook(push.booking, int(time.time()))
        if not report.ok:
            return {}
        try:
            return self.changed(set(report.sites))
        except Exception as exc:  # applied all the same: the platform's retry would be a replay
            log_failure(log, exc, "webhook for booking %s: stored, but bringing out the caches of %s failed; "
                        "they get versions at their next rebuild", push.booking.id, ",".join(sorted(report.sites)))
            return {}

    def _close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
