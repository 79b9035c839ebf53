"""Alerts as the dashboard, the API and the command line see them: the list (per site,
per county), acknowledging one (who and when, recorded once), and each user's alert
settings (hub/alerts/audience.py says what they mean).

Acknowledging stops an urgent alert's reminders and escalation (the running hub's
alerter reads the store); the alert stays open until what it is about clears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..config import HubConfig
from ..store import AlertPrefs, AlertRow, Store
from .base import Base
from .pages import AlertView

log = logging.getLogger(__name__)

#: How far back a site's page shows resolved alerts.
RECENT_ALERTS = 86400.0


def alert_view(cfg: HubConfig, a: AlertRow) -> AlertView:
    urgent = cfg.alerts is not None and a.kind in cfg.alerts.urgent
    return AlertView(id=a.id, site=a.site_id, kind=a.kind, subject=a.subject, urgent=urgent,
                     open=a.resolved_at is None, opened_at=a.opened_at, resolved_at=a.resolved_at, detail=a.detail,
                     acked_at=a.acked_at, acked_by=a.acked_by, reminders=a.reminders, escalated_at=a.escalated_at)


def alert_views(store: Store, cfg: HubConfig, sites: list[str] | None, *, kind: str | None = None,
                open_only: bool = False, since: float | None = None, limit: int = 100) -> list[AlertView]:
    """Alerts of ``sites`` (None: every site and the hub's own), newest first; none
    without ``[alerts]``."""
    if cfg.alerts is None:
        return []
    return [alert_view(cfg, a) for a in store.alerts(sites, kind=kind, open_only=open_only, since=since,
                                                      limit=limit)]


class Alerting(Base):
    """The alert list, acknowledging, and the users' alert settings."""

    def alert_list(self, sites: list[str] | None, *, kind: str | None = None, open_only: bool = False,
                   since: float | None = None, limit: int = 100) -> list[AlertView]:
        """Alerts of ``sites`` (None: all, the hub's own included), newest first."""
        return alert_views(self._store, self.cfg, sites, kind=kind, open_only=open_only, since=since, limit=limit)

    def acknowledge_alert(self, alert_id: int, by: str, may_see: Callable[[str], bool],
                          now: float | None = None) -> AlertView | None:
        """Record that ``by`` acknowledged the alert (the first acknowledgement stands; a
        resolved alert is left as it is); None when there is no such alert or ``may_see``
        refuses its site (the caller answers 404 either way)."""
        a = self._store.get_alert(alert_id)
        if a is None or not may_see(a.site_id):
            return None
        t = time.time() if now is None else now
        after = self._store.ack_alert(alert_id, by=by, at=t)
        if after is None:
            return None
        if after.acked_by == by and after.acked_at == t:
            log.info("alert #%d (%s at %s) acknowledged by %s", alert_id, a.kind, a.site_id or "-", by)
            self._notify(a.site_id, "alert")
        return alert_view(self.cfg, after)

    def alert_settings(self, user: str) -> AlertPrefs:
        """A user's alert settings (the defaults when it changed none)."""
        return self._store.get_alert_prefs(user)

    def set_user_email(self, name: str, email: str | None) -> bool:
        """Where a user's alerts go (None: nowhere); False when there is no such user."""
        return self._store.set_user_email(name, email)

    def set_alert_settings(self, prefs: AlertPrefs) -> None:
        """Store a user's alert settings (checked by ``hub.alerts.audience.check_prefs``)."""
        self._store.set_alert_prefs(prefs, now=time.time())
