"""Delivering the hub's queued check-ins and releases to the booking platform.

One worker thread per hub process, with its own store connection and its own adapter,
so that a slow or hanging platform never holds up the main loop. It claims due rows of
the store's ``feedback`` queue and sends each once per try: every request has the
adapter's timeouts and no retries of its own (``HttpPolicy(retries=0)``), since retrying
is the queue's job and survives restarts. Outcomes:

* 2xx: delivered.
* refused for good (4xx other than 401, 403, 408, 429; see ``WriteFailed.permanent``, or
  an adapter that cannot write): failed, shown in ``torwart-hub sites``, never sent again.
* anything else (no answer, timeout, 408, 429, 5xx, a refused token): tried again after
  ``retry_first_seconds``, doubling up to ``retry_max_seconds``, and never before the
  platform's ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from .booking import BookingAdapter, HttpPolicy, UnsupportedOperation, WriteFailed
from .config import HubConfig
from .errors import HubError
from .outage import log_failure
from .store import FeedbackItem, Store

log = logging.getLogger(__name__)

#: Longest wait between looks at the queue (another hub process may have queued rows).
POLL_SECONDS = 5.0
#: The longest ``Retry-After`` taken as it is.
MAX_RETRY_AFTER = 86400.0


@dataclass
class DeliveryStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


def backoff(cfg: HubConfig, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th try failed (1, 2, ...)."""
    b = cfg.booking
    return float(min(b.retry_max_seconds, b.retry_first_seconds * 2 ** min(max(attempts - 1, 0), 30)))


class Delivery:
    """The worker thread: ``start()``, ``wake()`` when a row was queued, ``stop()``."""

    def __init__(self, cfg: HubConfig) -> None:
        self.cfg = cfg
        self.stats = DeliveryStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        b = cfg.booking
        self.policy = HttpPolicy(connect_timeout=min(5.0, b.timeout_seconds), read_timeout=b.timeout_seconds,
                                 retries=0)
        #: How long a claimed row stays claimed: one request's worst case, with room to spare.
        self.lease = 2 * (self.policy.connect_timeout + self.policy.read_timeout) + 10.0

    def start(self) -> None:
        """Start the worker; a no-op while it runs. After ``stop`` it starts a new one (the
        old one ends after its request in flight; rows are claimed, so none goes twice)."""
        if self._thread is not None and self._thread.is_alive() and not self._stopping.is_set():
            return
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stopping,), name="booking-feedback",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the request in flight (if any; the thread is a daemon, so a platform
        that hangs beyond ``timeout`` does not keep the process up)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the worker thread ------------------------------------------------------------------------

    def _run(self, stopping: threading.Event) -> None:
        from .store import open_store
        from .sync import build_adapter

        store = open_store(self.cfg.hub.store_url)
        adapter: BookingAdapter | None = None
        try:
            adapter = build_adapter(self.cfg, lambda _email: None, policy=self.policy)
            while not stopping.is_set():
                try:
                    wait = self._round(store, adapter)
                except Exception as exc:  # a store error, a bug: the rows stay queued; look again later
                    log_failure(log, exc, "booking feedback: delivery round failed; trying again in %.0f s",
                                POLL_SECONDS)
                    wait = POLL_SECONDS
                self._wake.wait(wait)
        except HubError as exc:
            log.error("booking feedback: cannot reach the platform (%s); check-ins and releases stay queued", exc)
        finally:
            if adapter is not None:
                adapter.close()
            store.close()

    def _round(self, store: Store, adapter: BookingAdapter) -> float:
        """Deliver what is due; return how long to wait before the next round."""
        self._wake.clear()
        items = store.claim_feedback(time.time(), lease=self.lease)
        for item in items:
            if self._stopping.is_set():
                return 0.0  # the rest was claimed but not tried: due again when the lease ends
            self._deliver(store, adapter, item)
        if items:
            return 0.0
        due = store.next_feedback_due()
        return POLL_SECONDS if due is None else min(POLL_SECONDS, max(0.0, due - time.time()))

    def _deliver(self, store: Store, adapter: BookingAdapter, item: FeedbackItem) -> None:
        what = "check-in" if item.kind == "check_in" else "release"
        try:
            if item.kind == "check_in":
                adapter.check_in(item.booking_id, item.at)
            else:
                adapter.release(item.booking_id, "no_show")
        except HubError as exc:
            now = time.time()
            permanent = isinstance(exc, UnsupportedOperation) or (isinstance(exc, WriteFailed) and exc.permanent)
            if permanent:
                store.feedback_failed(item.booking_id, item.kind, str(exc), now=now)
                self.stats.failed += 1
                log.warning("the platform refused the %s of booking %s for good: %s", what, item.booking_id, exc)
                return
            wait = backoff(self.cfg, item.attempts + 1)
            if isinstance(exc, WriteFailed) and exc.retry_after is not None:
                wait = max(wait, min(exc.retry_after, MAX_RETRY_AFTER))
            store.feedback_retry(item.booking_id, item.kind, str(exc), next_try=now + wait)
            self.stats.retried += 1
            log.warning("%s of booking %s not delivered (try %d), again in %.0f s: %s", what, item.booking_id,
                        item.attempts + 1, wait, exc)
            return
        store.feedback_delivered(item.booking_id, item.kind, now=time.time())
        self.stats.delivered += 1
        log.info("%s of booking %s delivered to the platform", what, item.booking_id)
