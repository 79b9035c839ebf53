"""Alerts as Web Push notifications: the ``push`` channel's worker (``hub.alerts.worker``).

Each queue row is one message to one browser (``recipient``: its push service endpoint),
stored with the alert. The worker looks the subscription up when it sends (a browser
unsubscribed since is skipped), encrypts the notification to it and hands it to its push
service (hub/alerts/webpush.py). The push service's answer decides: taken → delivered;
404/410 → the subscription has ended: forgotten, the row done; 429/5xx or no answer →
tried again with backoff; another refusal → recorded on the row and the subscription
(``last_error``, shown to its user) and tried again later. Without the hub's VAPID key
(``torwart-hub init`` makes it) rows wait, and the dashboard says push is not set up.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..config import HubConfig
from ..store import AlertMail, Store
from .webpush import CHANNEL, Subscription, Vapid, WebPushError, send
from .worker import QueueWorker

log = logging.getLogger(__name__)


def vapid_key_path(cfg: HubConfig) -> Path:
    """Where the hub's VAPID key lives: ``{data_dir}/keys/vapid.pem``."""
    return cfg.hub.data_path / "keys" / "vapid.pem"


def push_service_allowed(cfg: HubConfig, endpoint: str) -> bool:
    """Whether ``endpoint`` lies at one of ``[alerts] push_services`` (the host, or a
    subdomain of it); nothing else is ever sent to."""
    host = (urlsplit(endpoint).hostname or "").lower()
    services = cfg.alerts.push_services if cfg.alerts is not None else []
    return bool(host) and any(host == s or host.endswith("." + s) for s in services)


def load_vapid(cfg: HubConfig) -> Vapid | None:
    """The hub's VAPID identity (its subject: ``mailto:`` the alerts' sender), or None
    when there is no key yet; WebPushError for a key that cannot be used."""
    path = vapid_key_path(cfg)
    if not path.exists():
        return None
    sender = cfg.alerts.from_ if cfg.alerts is not None else "torwart@localhost"
    return Vapid.load(path, f"mailto:{sender}")


class PushSender(QueueWorker):
    """The Web Push channel's worker thread."""

    channel = CHANNEL

    def __init__(self, cfg: HubConfig) -> None:
        super().__init__(cfg)
        self._vapid: Vapid | None = None

    def _identity(self) -> Vapid:
        if self._vapid is None:
            vapid = load_vapid(self.cfg)
            if vapid is None:
                raise WebPushError(f"no VAPID key at {vapid_key_path(self.cfg)} (run torwart-hub init)")
            self._vapid = vapid
        return self._vapid

    def _send(self, store: Store, rows: list[AlertMail]) -> None:
        subs = {s.endpoint: s for s in store.push_subscriptions()}
        for row in rows:
            if self._stopping.is_set():
                return  # claimed, not tried: due again when the lease ends
            sub = subs.get(row.recipient)
            if sub is None:  # unsubscribed since it was queued
                self._done(store, row)
                continue
            if not push_service_allowed(self.cfg, sub.endpoint):
                self._failed(store, row, "its push service is not in [alerts] push_services")
                continue
            try:
                delivery = send(self._identity(), Subscription(sub.endpoint, sub.p256dh, sub.auth),
                                row.body.encode("utf-8"), ttl=int(self.alerts.retry_max_seconds) * 4,
                                urgency="high" if '"urgent": true' in row.body else "normal",
                                timeout=self.alerts.timeout_seconds)
            except WebPushError as exc:
                self._failed(store, row, exc)
                continue
            if delivery.outcome == "delivered":
                store.push_delivered(sub.endpoint, now=time.time())
                self._done(store, row)
            elif delivery.outcome == "gone":
                log.info("alert push: a browser of %s unsubscribed (%s); forgotten", sub.user_name, delivery.status)
                store.remove_push_subscription(sub.endpoint)
                self._done(store, row)
            else:
                store.push_delivered(sub.endpoint, now=time.time(), error=delivery.error)
                self._failed(store, row, delivery.error or delivery.outcome)
