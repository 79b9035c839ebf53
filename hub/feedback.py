"""Telling the booking platform what happened at the door (PROTOCOL.md §5): a check-in
for every ``occupancy.checkin`` that carries a booking ref, and, where a site is
configured with ``no_show_minutes``, the release of bookings nobody checked in to.

Finding no-shows reads the store on the hub's main loop; the HTTP calls run on a
worker thread with its own adapter (and store connection), so a slow platform never
holds up ingest.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from typing import TYPE_CHECKING

from .config import HubConfig
from .errors import HubError
from .store import SqliteStore, Store

if TYPE_CHECKING:
    from .sync import BookingSync

log = logging.getLogger(__name__)


class Feedback:
    def __init__(self, cfg: HubConfig, *, supports_write: bool) -> None:
        self.cfg = cfg
        self.supports_write = supports_write
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="booking-feedback")
        self._sync: BookingSync | None = None  # worker thread only
        self._released: set[str] = set()
        self._unsupported_noted = False

    # --- worker thread -----------------------------------------------------------------------------

    def _adapter_sync(self) -> BookingSync:
        if self._sync is None:
            from .sync import BookingSync

            self._sync = BookingSync(self.cfg, SqliteStore(self.cfg.hub.store_path))
        return self._sync

    def _check_in(self, ref: str, at: int) -> None:
        try:
            self._adapter_sync().adapter.check_in(ref, at)
            log.info("reported check-in of booking %s to the platform", ref)
        except HubError as exc:
            log.warning("could not report the check-in of booking %s: %s", ref, exc)

    def _release(self, ref: str) -> None:
        try:
            self._adapter_sync().adapter.release(ref, "no_show")
            log.info("released booking %s on the platform: nobody checked in", ref)
        except HubError as exc:
            self._released.discard(ref)  # try again next round
            log.warning("could not release booking %s: %s", ref, exc)

    # --- main loop ------------------------------------------------------------------------------------

    def checked_in(self, ref: str, at: int) -> concurrent.futures.Future[None]:
        return self._pool.submit(self._check_in, ref, at)

    def release_no_shows(self, store: Store, now: int) -> list[str]:
        """Release every booking that started ``no_show_minutes`` ago (per site) and has no
        check-in; return the ids handed to the worker."""
        out: list[str] = []
        for site in self.cfg.sites:
            minutes = self.cfg.no_show_minutes(site.id)
            if minutes is None:
                continue
            due = [b for b in store.bookings_for_site_window(site.id, now - 86400, now + 1, status="confirmed")
                   if b.start + minutes * 60 <= now < b.end and b.id not in self._released]
            if not due:
                continue
            checked: set[str] = set()
            for ev in store.events(site_id=site.id, type="occupancy.checkin", since=now - 2 * 86400, limit=100_000):
                ref = json.loads(ev.payload).get("ref")
                if isinstance(ref, str):
                    checked.add(ref)
            for b in due:
                if b.id in checked:
                    continue
                if not self._writable():
                    return out
                self._released.add(b.id)
                self._pool.submit(self._release, b.id)
                out.append(b.id)
        return out

    def _writable(self) -> bool:
        if self.supports_write:
            return True
        if not self._unsupported_noted:
            log.warning("no_show_minutes is set, but the %s adapter cannot release bookings", self.cfg.booking.adapter)
            self._unsupported_noted = True
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
