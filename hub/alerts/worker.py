"""The delivery worker both alert channels share: a thread with its own store connection
that claims the due rows of its channel from the durable queue (``alert_mails``, by
``channel``), hands them to the channel's ``_send``, and backs off a row that failed.

A row claimed is leased (its ``next_try`` moved past ``lease``), so a process that dies
with it leaves it due again after the lease; a row is done only when the channel marks it
sent (``Store.alert_mail_sent``). Failures stay on the row (``attempts``, ``last_error``),
which ``Store.failing_alert_deliveries`` lists for the dashboard. A failed row is tried
again after ``retry_first_seconds``, doubling up to ``retry_max_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time

from ..config import AlertsSection, HubConfig
from ..outage import log_failure
from ..store import AlertMail, Store

log = logging.getLogger(__name__)

#: Longest wait between looks at the queue (another hub process may have queued rows).
POLL_SECONDS = 5.0


def backoff(a: AlertsSection, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th try failed (1, 2, ...)."""
    return float(min(a.retry_max_seconds, a.retry_first_seconds * 2 ** min(max(attempts - 1, 0), 30)))


class QueueWorker:
    """One channel's worker thread: ``start()``, ``wake()`` when a row was queued, ``stop()``.
    Subclasses name their ``channel`` and implement ``_send``."""

    channel = ""

    def __init__(self, cfg: HubConfig) -> None:
        if cfg.alerts is None:
            raise ValueError("alerts are not configured")
        self.cfg = cfg
        self.alerts: AlertsSection = cfg.alerts
        self.sent = 0
        self.retried = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease = 2 * self.alerts.timeout_seconds + 10.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"alert-{self.channel}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from ..store import open_store

        store = open_store(self.cfg.hub.store_url)
        try:
            while not self._stopping.is_set():
                try:
                    wait = self.round(store)
                except Exception as exc:  # a store error, a bug: the rows stay queued
                    log_failure(log, exc, "alert %s: delivery round failed; trying again in %.0f s", self.channel,
                                POLL_SECONDS)
                    wait = POLL_SECONDS
                self._wake.wait(wait)
        finally:
            store.close()

    def round(self, store: Store) -> float:
        """Deliver what is due; how long to wait next."""
        self._wake.clear()
        rows = store.claim_alert_mails(time.time(), lease=self.lease, channel=self.channel)
        if rows:
            self._send(store, rows)
            return 0.0
        due = store.next_alert_mail_due(self.channel)
        return POLL_SECONDS if due is None else min(POLL_SECONDS, max(0.0, due - time.time()))

    def _send(self, store: Store, rows: list[AlertMail]) -> None:
        raise NotImplementedError

    def _failed(self, store: Store, row: AlertMail, exc: BaseException | str) -> None:
        """Record a failed try of ``row`` and when it is due again."""
        wait = backoff(self.alerts, row.attempts + 1)
        error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        store.alert_mail_retry(row.id, error, next_try=time.time() + wait)
        self.retried += 1
        log.warning("alert %s %d to %s not delivered (try %d), again in %.1f s: %s", self.channel, row.id,
                    row.recipient, row.attempts + 1, wait, error)

    def _done(self, store: Store, row: AlertMail) -> None:
        store.alert_mail_sent(row.id, now=time.time())
        self.sent += 1
        log.info("alert %s %d delivered to %s", self.channel, row.id, row.recipient)
