"""Bookings from the platform: a sync now (the running hub's schedule, ``torwart-hub
sync``), and a booking the platform pushed (the webhook), each followed by the caches of
the sites it touches."""

from __future__ import annotations

import time

from ..booking.webhook import MAX_SKEW_SECONDS, SignedPush
from ..sync import BookingSync, Progress, SyncReport
from .push import Pushing


class Bookings(Pushing):
    """The booking acts (see the module's docstring)."""

    _sync: BookingSync | None

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

    def apply_push(self, push: SignedPush) -> dict[str, int] | None:
        """Apply a verified webhook push once: remember its signature and store its booking,
        then bring out the caches it changes; site → new version, or None when the
        signature was accepted before (a replay). A push that fails to apply is forgotten
        again, so that the platform's retry of the same request is not taken for a replay."""
        store, now = self._store, time.time()
        # A signature whose timestamp is this far back fails the timestamp check anyway.
        forget_before = int(now) - MAX_SKEW_SECONDS - 60
        if not store.remember_webhook_signature(push.signature, ts=push.timestamp, at=now,
                                                forget_before=forget_before):
            return None
        try:
            report = self.booking_sync.apply_webhook(push.booking, int(time.time()))
            return self.changed(set(report.sites)) if report.ok else {}
        except BaseException:
            store.forget_webhook_signature(push.signature)
            raise

    def _close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
