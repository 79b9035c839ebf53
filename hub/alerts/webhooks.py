"""Alerts as signed webhooks: ``[[alerts.webhooks]] url, secret_file`` hear every alert's
opening and resolution as a JSON POST, signed like the booking platform's pushes
(PROTOCOL.md §5, ``hub.webhook_signing``), so a county can feed its own systems.

The request: ``POST url`` with ``Content-Type: application/json``, ``X-Torwart-Timestamp``
and ``X-Torwart-Signature`` (HMAC-SHA256 with the webhook's secret over ``TIMESTAMP.BODY``,
made when the request is sent, so a retry carries a fresh timestamp), ``X-Torwart-Event``
(``alert.opened`` or ``alert.resolved``) and ``X-Torwart-Delivery`` (the queue row's id, as
in the body). The body, UTF-8 JSON::

    {"event": "alert.opened",            // or "alert.resolved"
     "delivery": 17,                     // unique per delivery: a receiver drops repeats by it
     "alert_id": 5,                      // one alert's opening and resolution share it
     "site": "minheim", "site_name": "Bürgerhaus Minheim",
     "kind": "door_forced",              // hub/alerts/rules.py
     "subject": "eingang",               // the door or reader; "" for the whole site
     "detail": null,                     // e.g. "95 s" for a door held open
     "at": "2026-11-23T03:12:09+00:00",  // when it opened (resolved), ISO 8601, UTC
     "ts": 1795403529.0,                 // the same as Unix seconds
     "link": "https://hub.example/sites/minheim"}

A 2xx answer delivers it; anything else (no connection, a timeout, another status, a
redirect) is a failure, tried again with backoff from the durable queue it was stored in
with the alert (``hub.alerts.worker``): nothing is lost across restarts. A hub killed
after the receiver took a request but before the store marked it delivered sends it once
more after the restart, with the same ``delivery``: receivers should drop repeats by it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from wire import software_version

from ..config import HubConfig, read_secret
from ..errors import ConfigError
from ..store import AlertMail, OutMail, Store
from ..webhook_signing import signed_headers
from .worker import QueueWorker

log = logging.getLogger(__name__)

CHANNEL = "webhook"
EVENT_HEADER = "X-Torwart-Event"
DELIVERY_HEADER = "X-Torwart-Delivery"
#: The most of an answer's body read (and dropped).
MAX_ANSWER_BYTES = 64 * 1024


class NotDelivered(Exception):
    """The receiver answered, but not with 2xx."""


def outgoing(cfg: HubConfig, *, what: str, kind: str, subject: str, site_id: str, site_name: str, at: float,
             detail: str | None, link: str) -> list[OutMail]:
    """The queue rows of one alert change (``what``: ``opened`` or ``resolved``) for every
    configured webhook (none without ``[[alerts.webhooks]]``), to be stored with it."""
    hooks = cfg.alerts.webhooks if cfg.alerts is not None else []
    if not hooks:
        return []
    event = f"alert.{what}"
    doc = {"event": event, "site": site_id, "site_name": site_name or site_id, "kind": kind, "subject": subject,
           "detail": detail, "at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds"),
           "ts": at, "link": link}
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True)
    return [OutMail(w.url, event, body, channel=CHANNEL) for w in hooks]


def request_body(row: AlertMail) -> bytes:
    """The JSON sent for ``row``: its stored document with ``delivery`` and ``alert_id``."""
    doc: dict[str, Any] = json.loads(row.body)
    doc.update(delivery=row.id, alert_id=row.alert_id)
    return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")


class WebhookSender(QueueWorker):
    """The webhook channel's worker thread (``hub.alerts.worker``)."""

    channel = CHANNEL

    def _secret(self, url: str) -> bytes:
        """The secret of the configured webhook ``url``; ConfigError when there is none (no
        longer configured) or its file is unusable."""
        hook = next((w for w in self.alerts.webhooks if w.url == url), None)
        if hook is None:
            raise ConfigError("hub.toml", "alerts.webhooks", f"{url} is no longer configured")
        return read_secret(hook.secret_file).encode("utf-8")

    def _post(self, row: AlertMail) -> int:
        """POST ``row`` to its webhook; the answer's status, NotDelivered unless 2xx."""
        url = urlsplit(row.recipient)
        body = request_body(row)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": f"torwart-hub/{software_version()}",
                   EVENT_HEADER: row.mail_subject, DELIVERY_HEADER: str(row.id),
                   **signed_headers(body, self._secret(row.recipient), int(time.time()))}
        timeout = self.alerts.timeout_seconds
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.request("POST", (url.path or "/") + (f"?{url.query}" if url.query else ""), body, headers)
            answer = conn.getresponse()
            answer.read(MAX_ANSWER_BYTES)
        finally:
            conn.close()
        if not 200 <= answer.status < 300:
            raise NotDelivered(f"HTTP {answer.status} {answer.reason}")
        return answer.status

    def _send(self, store: Store, rows: list[AlertMail]) -> None:
        for row in rows:
            if self._stopping.is_set():
                return  # claimed, not tried: due again when the lease ends
            try:
                self._post(row)
            except (OSError, http.client.HTTPException, NotDelivered, ConfigError, ValueError) as exc:
                self._failed(store, row, exc)
                continue
            self._done(store, row)
