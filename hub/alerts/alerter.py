"""Deciding alerts and queueing their messages, on the hub's main loop.

``Alerter.on_event`` takes each newly stored event, ``on_status`` each site Status, and
``tick`` (the hub's schedule calls it every few seconds) the sites' states, the booking
sync and the open alerts' reminders. A decision to open an alert is stored with every
recipient's message in one transaction (``Store.open_alert``), and only when no alert of
that (site, kind, subject) is open; clearing, reminding and escalating likewise
(``Store.resolve_alert``, ``remind_alert``, ``escalate_alert``), so a restart or a second
hub process sends nothing twice. Sending is the mailer's (hub/alerts/mailer.py), off this
loop: ``wake`` tells it there is something new; ``notify(site)`` tells the dashboard.

Who hears what: hub/alerts/audience.py (sites, kinds, channels, language, quiet hours).
An urgent alert (``[alerts] urgent``) nobody has acknowledged gets a reminder to its
recipients every ``remind_minutes`` (at most ``max_reminders``) and goes to every admin
after ``escalate_minutes``; acknowledging it (dashboard, API) stops both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from wire import messages as m

from ..config import AlertsSection, HubConfig
from ..store import AlertRow, OutMail, Store
from . import audience, rules, webhooks, webpush
from .conditions import StoredSince
from .denials import StoredDenials
from .texts import compose

log = logging.getLogger(__name__)


def _raised(a: AlertRow) -> float:
    return a.raised_at if a.raised_at is not None else a.opened_at


class Alerter:
    """Alert decisions into the store's queue; ``wake()`` after each queued message."""

    def __init__(self, cfg: HubConfig, store: Store, wake: Callable[[], None],
                 notify: Callable[[str, str], None] | None = None) -> None:
        if cfg.alerts is None:
            raise ValueError("alerts are not configured")
        self.cfg = cfg
        self.a: AlertsSection = cfg.alerts
        self.store = store
        self.wake = wake
        self.notify = notify or (lambda site, what: None)
        self.offline_seconds = self.a.offline_minutes * 60.0
        self.enabled = frozenset(self.a.kinds)
        self.urgent = frozenset(self.a.urgent)
        self.since = StoredSince(store)
        self.denials = StoredDenials(store, self.a.denials, self.a.denials_minutes * 60.0)

    # --- who hears, and the messages ---------------------------------------------------------------

    def recipients(self, site: str, kind: str = rules.SITE_OFFLINE,
                   now: float | None = None) -> list[audience.Recipient]:
        """Everyone who hears about ``kind`` at ``site`` (quiet hours as of ``now``)."""
        t = time.time() if now is None else now
        return audience.hearers(self.store.users(), self.store.alert_prefs(), site, kind,
                                urgent=kind in self.urgent, now=t, endpoints=self.endpoints())

    def endpoints(self) -> dict[str, list[str]]:
        """Each user's Web Push endpoints."""
        out: dict[str, list[str]] = {}
        for sub in self.store.push_subscriptions():
            out.setdefault(sub.user_name, []).append(sub.endpoint)
        return out

    def link(self, site: str) -> str:
        base = self.cfg.dashboard_url()
        return f"{base}/sites/{site}" if site else f"{base}/alerts"

    def _mails(self, site: str, kind: str, subject: str, *, at: float, what: str, detail: str | None,
               to: list[audience.Recipient]) -> list[OutMail]:
        try:
            name = self.cfg.site(site).name
        except KeyError:
            name = ""
        link = self.link(site)
        mails = [compose(what=what, kind=kind, subject=subject, site_id=site, site_name=name, at=at,
                         link=link, recipient=r.address, detail=detail, lang=r.lang, not_before=r.not_before)
                 for r in to]
        mails = [webpush.notification(mail, link=link, tag=f"torwart-{site}-{kind}-{subject}",
                                      urgent=kind in self.urgent and what != "resolved")
                 if r.channel == "push" else mail for r, mail in zip(to, mails, strict=True)]
        if what not in ("opened", "resolved"):  # reminders and escalations are for people
            return mails
        return mails + webhooks.outgoing(self.cfg, what=what, kind=kind, subject=subject, site_id=site,
                                         site_name=name, at=at, detail=detail, link=link)

    # --- decisions ------------------------------------------------------------------------------

    def apply(self, site: str, d: rules.Decision, now: float | None = None) -> int | None:
        """Store one decision (and queue its messages); the alert's id if it changed anything.
        A kind not in ``[alerts] kinds`` is not opened (one open already still clears)."""
        t = time.time() if now is None else now
        if d.action == "open":
            if d.kind not in self.enabled:
                return None
            to = self.recipients(site, d.kind, t)
            alert_id = self.store.open_alert(site, d.kind, d.subject, at=d.at, detail=d.detail, now=t,
                                             mails=self._mails(site, d.kind, d.subject, at=d.at, what="opened",
                                                               detail=d.detail, to=to))
            if alert_id is not None:
                log.warning("site %s: alert %s %s opened (#%d)", site or "-", d.kind, d.subject or "-", alert_id)
        else:
            to = self.recipients(site, d.kind, t)
            alert_id = self.store.resolve_alert(site, d.kind, d.subject, at=d.at, now=t,
                                                mails=self._mails(site, d.kind, d.subject, at=d.at, what="resolved",
                                                                 detail=None, to=to))
            if alert_id is not None:
                log.info("site %s: alert %s %s resolved (#%d)", site or "-", d.kind, d.subject or "-", alert_id)
        if alert_id is not None:
            self.wake()
            self.notify(site, "alert")
        return alert_id

    def on_event(self, site: str, ev: m.Event, now: float | None = None) -> None:
        """What a newly stored event opens or clears (it must be in the store already: the
        denials' window is counted from the stored refusals). Durations are counted on the
        hub's clock, and on the site's only where the event says it was trusted."""
        t = time.time() if now is None else now
        for d in rules.from_event(ev):
            self.apply(site, d, t)
        if rules.DENIALS in self.enabled and rules.guessing(ev):  # one store read (hub/alerts/denials.py)
            guess = self.denials.add(site, ev, ev.ts if ev.clock_synced else t)
            if guess is not None:
                self.apply(site, guess, t)
        if isinstance(ev, m.ClockUntrusted | m.ClockTrusted):
            self.since.see((site, rules.CLOCK_UNTRUSTED), isinstance(ev, m.ClockUntrusted), t)

    def on_status(self, site: str, st: m.Status, now: float | None = None) -> None:
        """What a site's Status opens or clears (storage error, lockdown) and the clock's trust."""
        t = time.time() if now is None else now
        if st.state != "online":
            return
        self.since.see((site, rules.CLOCK_UNTRUSTED), not st.clock_synced, t)
        is_open = {a.kind for a in self.store.open_alerts(site)}
        for d in rules.from_status(st, is_open, t):
            self.apply(site, d, t)

    def check_offline(self, now: float | None = None) -> None:
        """Open ``site_offline`` for sites offline too long; clear it for sites back online."""
        now = time.time() if now is None else now
        configured = {s.id for s in self.cfg.sites}
        states = [rules.SiteSeen(st.site_id, st.online, st.since) for st in self.store.site_states()
                  if st.site_id in configured]
        open_offline = {a.site_id for a in self.store.open_alerts() if a.kind == rules.SITE_OFFLINE}
        for site, d in rules.offline(states, open_offline, now, self.offline_seconds):
            self.apply(site, d, now)

    def tick(self, now: float | None = None) -> None:
        """The schedule's round: offline sites, slow conditions, the sync, reminders."""
        t = time.time() if now is None else now
        self.check_offline(t)
        self._check_slow(t)
        self._check_sync(t)
        self._check_denials(t)
        self.remind(t)

    def _check_slow(self, now: float) -> None:
        """``clock_untrusted`` and ``cache_stale`` of the configured sites online, from the
        conditions' starts in the store (hub/alerts/conditions.py: the same on every node
        and after a restart)."""
        configured = {s.id for s in self.cfg.sites}
        open_ = {(a.site_id, a.kind) for a in self.store.open_alerts()}
        self.since.load()
        self.since.forget_other_sites(configured)
        for st in self.store.site_states():
            if st.site_id not in configured:
                continue
            site = st.site_id
            cache = self.store.cache_state(site)
            behind = st.online and cache is not None and st.cache_version != cache.version
            self.since.settle((site, rules.CACHE_STALE), behind, now)
            if not st.online:
                self.since.settle((site, rules.CLOCK_UNTRUSTED), False, now)
            for kind, minutes in ((rules.CLOCK_UNTRUSTED, self.a.clock_minutes),
                                  (rules.CACHE_STALE, self.a.cache_minutes)):
                d = rules.timed(kind, (site, kind), self.since, is_open=(site, kind) in open_, now=now,
                                seconds=minutes * 60.0)
                if d is not None:
                    self.apply(site, d, now)

    def _check_sync(self, now: float) -> None:
        state = self.store.get_sync_state(self.cfg.booking.adapter)
        is_open = any(a.kind == rules.SYNC_FAILING for a in self.store.open_alerts(rules.HUB))
        d = rules.sync(state.failures, state.last_error, is_open, self.a.sync_failures, now)
        if d is not None:
            self.apply(rules.HUB, d, now)

    def _check_denials(self, now: float) -> None:
        for a in self.store.open_alerts():
            if a.kind == rules.DENIALS and self.denials.quiet(a.site_id, a.subject, a.opened_at, now):
                self.apply(a.site_id, rules.Decision("clear", rules.DENIALS, a.subject, now), now)

    # --- reminders and escalation ----------------------------------------------------------------

    def remind(self, now: float | None = None) -> None:
        """Remind and escalate the urgent alerts nobody has acknowledged, each step once
        (counted from when the hub raised the alert)."""
        t = time.time() if now is None else now
        for a in self.store.open_alerts():
            if a.acked_at is not None or a.kind not in self.urgent:
                continue
            self._escalate(a, t)
            n = a.reminders + 1
            if n <= self.a.max_reminders and t >= _raised(a) + n * self.a.remind_minutes * 60.0:
                admins = {u.name for u in self.store.users() if u.role == "admin"}
                to = [r for r in self.recipients(a.site_id, a.kind, t) if r.user not in admins]
                mails = self._mails(a.site_id, a.kind, a.subject, at=a.opened_at, what="reminder",
                                    detail=a.detail, to=to)
                if self.store.remind_alert(a.id, number=n, at=t, mails=mails):
                    log.warning("alert #%d (%s at %s) not acknowledged: reminder %d to %d", a.id, a.kind,
                                a.site_id or "-", n, len(mails))
                    self.wake()

    def _escalate(self, a: AlertRow, now: float) -> None:
        if a.escalated_at is not None or now < _raised(a) + self.a.escalate_minutes * 60.0:
            return
        to = audience.admins(self.store.users(), self.store.alert_prefs(), self.endpoints())
        mails = self._mails(a.site_id, a.kind, a.subject, at=a.opened_at, what="escalated", detail=a.detail,
                            to=to)
        if self.store.escalate_alert(a.id, at=now, mails=mails):
            log.warning("alert #%d (%s at %s) not acknowledged: escalated to %d admins", a.id, a.kind,
                        a.site_id or "-", len(mails))
            self.wake()
            self.notify(a.site_id, "alert")
