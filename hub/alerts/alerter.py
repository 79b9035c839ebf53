"""Deciding alerts and queueing their messages, on the hub's main loop.

``Alerter.on_event`` takes each newly stored event, ``check_offline`` the sites' states
(the hub's schedule calls it every few seconds). A decision to open an alert is stored
with every recipient's message in one transaction (``Store.open_alert``), and only when no
alert of that (site, kind, subject) is open; clearing likewise. Sending is the mailer's
(hub/alerts/mailer.py), off this loop: ``wake`` tells it there is something new.

Who hears: every dashboard user with an e-mail address whose sites include the site
(admins, and caretakers without a site list, see every site), in German (users have no
language setting yet).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from wire import messages as m

from ..config import HubConfig
from ..store import OutMail, Store
from . import rules, webhooks
from .texts import compose

log = logging.getLogger(__name__)


class Alerter:
    """Alert decisions into the store's queue; ``wake()`` after each queued message."""

    def __init__(self, cfg: HubConfig, store: Store, wake: Callable[[], None]) -> None:
        if cfg.alerts is None:
            raise ValueError("alerts are not configured")
        self.cfg = cfg
        self.store = store
        self.wake = wake
        self.offline_seconds = cfg.alerts.offline_minutes * 60.0

    def recipients(self, site: str) -> list[tuple[str, str]]:
        """(address, language) of everyone who hears about ``site``."""
        return [(u.email, "de") for u in self.store.users()
                if u.email and (u.sites is None or site in u.sites)]

    def _mails(self, site: str, d: rules.Decision, what: str, detail: str | None) -> list[OutMail]:
        try:
            name = self.cfg.site(site).name
        except KeyError:
            name = ""
        link = f"{self.cfg.dashboard_url()}/sites/{site}"
        return [compose(what=what, kind=d.kind, subject=d.subject, site_id=site, site_name=name, at=d.at,
                        link=link, recipient=addr, detail=detail, lang=lang)
                for addr, lang in self.recipients(site)] + webhooks.outgoing(
            self.cfg, what=what, kind=d.kind, subject=d.subject, site_id=site, site_name=name, at=d.at,
            detail=detail, link=link)

    def apply(self, site: str, d: rules.Decision) -> int | None:
        """Store one decision (and queue its messages); the alert's id if it changed anything."""
        if d.action == "open":
            alert_id = self.store.open_alert(site, d.kind, d.subject, at=d.at, detail=d.detail,
                                             mails=self._mails(site, d, "opened", d.detail))
            if alert_id is not None:
                log.warning("site %s: alert %s %s opened (#%d)", site, d.kind, d.subject or "-", alert_id)
        else:
            alert_id = self.store.resolve_alert(site, d.kind, d.subject, at=d.at,
                                                mails=self._mails(site, d, "resolved", None))
            if alert_id is not None:
                log.info("site %s: alert %s %s resolved (#%d)", site, d.kind, d.subject or "-", alert_id)
        if alert_id is not None:
            self.wake()
        return alert_id

    def on_event(self, site: str, ev: m.Event) -> None:
        """What a newly stored event opens or clears."""
        for d in rules.from_event(ev):
            self.apply(site, d)

    def check_offline(self, now: float | None = None) -> None:
        """Open ``site_offline`` for sites offline too long; clear it for sites back online."""
        now = time.time() if now is None else now
        configured = {s.id for s in self.cfg.sites}
        states = [rules.SiteSeen(st.site_id, st.online, st.since) for st in self.store.site_states()
                  if st.site_id in configured]
        open_offline = {a.site_id for a in self.store.open_alerts() if a.kind == rules.SITE_OFFLINE}
        for site, d in rules.offline(states, open_offline, now, self.offline_seconds):
            self.apply(site, d)
