"""Telling the booking platform what happened at the door (PROTOCOL.md §5): a check-in
for every ``occupancy.checkin`` of a booking at its own room, and, where a site is
configured with ``no_show_minutes``, the release of bookings nobody checked in to while
the hub could see that nobody did.

Everything here runs on the hub's main loop and only decides and queues: each check-in
and release goes into the store's ``feedback`` queue once per (booking, kind), and the
worker of hub/feedback_delivery.py sends it, retrying until the platform takes it or
refuses it for good.

**Check-ins.** A site may report a check-in only for a confirmed booking the hub knows
whose resource maps to a room of that site, the room the event names. Anything else (a
compromised site reporting other halls' bookings, a stale cache's cancelled booking) is
refused: logged and counted in ``stats.checkins_refused`` by reason, never sent.

**Releases.** A booking counts as a no-show only if its site was online, with nothing in
its outbox and every event acknowledged, for the whole time from the booking's start to
the release: otherwise a check-in may be stuck at the site. Per site the hub keeps in the
store the moment since which it has seen that without a break (``clean_since``): an
offline status (the Last Will), a status with ``outbox_pending`` > 0, a gap in the
site's events, a restart of the site (another ``boot``) or of the hub itself (it did not
watch while it was down) ends it. A release is queued only if ``clean_since`` ≤ the
booking's start; the queue row is the durable record that it was released, so it is
released once, across restarts and hub processes.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass, field

from wire import messages as m

from .config import HubConfig
from .feedback_delivery import Delivery
from .store import SiteState, Store

log = logging.getLogger(__name__)


@dataclass
class FeedbackStats:
    checkins_queued: int = 0
    #: Check-ins of a booking queued before (a resend, a second badge).
    checkins_again: int = 0
    #: Refused check-ins by reason: unknown_booking, not_confirmed, other_site, other_room.
    checkins_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    releases_queued: int = 0
    #: No-shows not released because the hub could not see the site throughout.
    releases_held: int = 0


# --- what "clean" means (small helpers, so that per-stream acks can slot in) -------------------------


def events_up_to_date(state: SiteState | None) -> bool:
    """Every event the hub has seen of the site is stored, without a gap below it."""
    return state is not None and not state.gaps and state.acked_upto >= state.max_seq


def status_clean(status: m.Status, state: SiteState | None) -> bool:
    """The site is online with an empty outbox and the hub holds all its events."""
    return status.state == "online" and status.outbox_pending == 0 and events_up_to_date(state)


class Feedback:
    """Decides and queues check-ins and releases (main loop only: it uses ``store``)."""

    def __init__(self, cfg: HubConfig, store: Store, *, supports_write: bool) -> None:
        self.cfg = cfg
        self.store = store
        self.supports_write = supports_write
        self.stats = FeedbackStats()
        self.delivery = Delivery(cfg)
        self._held: set[str] = set()
        self._unsupported_noted = False

    def start(self, *, forget: bool = True, deliver: bool = True) -> None:
        """The hub starts: it did not watch the sites while it was down, so none is clean
        yet (``forget``; not when other nodes of the hub ran and watched); deliveries left
        in the queue by an earlier run go out now (``deliver``; with several nodes, the
        leader's: ``start_delivery``)."""
        if forget:
            self.store.forget_clean_since()
        if deliver:
            self.start_delivery()

    def start_delivery(self) -> None:
        """Start the delivery worker (this node became the leader); again after a stop."""
        if self.supports_write:
            self.delivery.start()

    def stop_delivery(self) -> None:
        """Stop the delivery worker (this node is not the leader any more)."""
        self.delivery.stop()

    def close(self) -> None:
        self.delivery.stop()

    # --- check-ins ------------------------------------------------------------------------------

    def checked_in(self, site: str, ev: m.OccupancyCheckin) -> bool:
        """Queue the check-in ``site`` reported, if it may report it; True if queued now."""
        ref = ev.ref
        if ref is None:
            return False
        why = self._refusal(site, ev.room, ref)
        if why is not None:
            self.stats.checkins_refused[why] += 1
            log.warning("site %s: check-in for booking %r refused (%s); not reported to the platform",
                        site, ref[:80], why)
            return False
        if not self._writable("check-ins"):
            return False
        if not self.store.queue_feedback(ref, "check_in", site, int(ev.ts), now=time.time()):
            self.stats.checkins_again += 1
            log.info("site %s: check-in for booking %s already queued", site, ref)
            return False
        self.stats.checkins_queued += 1
        self.delivery.wake()
        return True

    def _refusal(self, site: str, room: str, ref: str) -> str | None:
        booking = self.store.get_booking(ref)
        if booking is None:
            return "unknown_booking"
        where = self.store.room_for_resource(booking.resource_id)
        if where is None or where[0] != site:
            return "other_site"
        if where[1] != room:
            return "other_room"
        if booking.status != "confirmed":
            return "not_confirmed"
        return None

    # --- watching the sites ------------------------------------------------------------------------

    def clean_since(self, site: str) -> float | None:
        """Since when the hub has seen ``site`` online and caught up without a break."""
        return self.store.site_watch(site)[0]

    def watch_status(self, site: str, status: m.Status, now: float) -> None:
        """After the site's Status (or Last Will) is recorded."""
        since, boot = self.store.site_watch(site)
        new: float | None
        if not status_clean(status, self.store.site_state(site)):
            new = None
        elif since is None or (boot is not None and status.boot != boot):
            new = now  # (again) from now: a restarted site was down for a while
        else:
            new = since
        new_boot = status.boot if status.state == "online" else boot
        if (new, new_boot) != (since, boot):
            self.store.set_site_watch(site, new, new_boot)
            if since is not None and new != since:
                log.info("site %s: not seen clean since %.0f any more (%s, outbox %d)", site, since, status.state,
                         status.outbox_pending)

    def watch_events(self, site: str) -> None:
        """After a batch of the site's events is stored: a gap ends its clean time."""
        since, boot = self.store.site_watch(site)
        if since is not None and not events_up_to_date(self.store.site_state(site)):
            self.store.set_site_watch(site, None, boot)
            log.info("site %s: events missing; not clean any more", site)

    # --- releases ----------------------------------------------------------------------------------

    def release_no_shows(self, now: int) -> list[str]:
        """Queue the release of every booking that started ``no_show_minutes`` ago (per
        site), has no check-in, and whose site the hub saw clean from its start until
        now; return the ids queued by this call."""
        out: list[str] = []
        for site in self.cfg.sites:
            minutes = self.cfg.no_show_minutes(site.id)
            if minutes is None:
                continue
            due = [b for b in self.store.bookings_for_site_window(site.id, now - 86400, now + 1, status="confirmed")
                   if b.start + minutes * 60 <= now < b.end]
            if not due or not self._writable("releases"):
                continue
            since = self.clean_since(site.id)
            checked: set[str] = set()
            for ev in self.store.events(site_id=site.id, type="occupancy.checkin", since=now - 2 * 86400,
                                        limit=100_000):
                ref = json.loads(ev.payload).get("ref")
                if isinstance(ref, str):
                    checked.add(ref)
            for b in due:
                if b.id in checked or self.store.get_feedback(b.id, "check_in") is not None:
                    continue
                if since is None or since > b.start:
                    self._hold(site.id, b.id, since)
                    continue
                if self.store.queue_feedback(b.id, "release", site.id, now, now=time.time()):
                    self.stats.releases_queued += 1
                    log.info("site %s: booking %s released (nobody checked in within %d min)", site.id, b.id,
                             minutes)
                    out.append(b.id)
        if out:
            self.delivery.wake()
        return out

    def _hold(self, site: str, booking: str, since: float | None) -> None:
        if booking in self._held:
            return
        if len(self._held) > 10_000:  # a long-running hub: forget the old ones
            self._held.clear()
        self._held.add(booking)
        self.stats.releases_held += 1
        log.info("site %s: booking %s looks like a no-show, but the hub has not seen the site online and caught "
                 "up since its start (%s); not released", site, booking,
                 "not now" if since is None else f"only since {since:.0f}")

    def _writable(self, what: str) -> bool:
        if self.supports_write:
            return True
        if not self._unsupported_noted:
            log.warning("the %s adapter cannot write to the platform: %s are not reported",
                        self.cfg.booking.adapter, what)
            self._unsupported_noted = True
        return False
