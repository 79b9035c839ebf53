"""The leader's side of the running hub (``HubService``): which jobs run only on the node
that holds the leader's lease (hub/leader.py), and how they start when it becomes the
leader and stop when it loses the lease.

The scheduled singleton jobs (booking sync, watching and publishing cache versions, the
periodic rebuild, retention, no-show release, the alerts' offline check) go through
``_as_leader``: posted only while this node leads, and run only if it still does when
their turn on the main loop comes. The worker threads (check-in delivery, the alert
mailer) are started by ``_gained`` and stopped by ``_lost``, which the lease's threads
call the moment the lease is taken or ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from .alerts.alerter import Alerter
from .alerts.mailer import Mailer
from .config import HubConfig
from .core import Hub
from .feedback import Feedback
from .leader import Leadership
from .link import HubLink
from .store import Lease

log = logging.getLogger(__name__)

Work = Callable[[], object]


def _soon() -> Any:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


class LeaderJobs:
    """Mixed into ``HubService``: the leader's jobs (see the module's docstring)."""

    cfg: HubConfig
    leadership: Leadership
    hub: Hub
    link: HubLink
    feedback: Feedback
    alerter: Alerter | None
    mailer: Mailer | None
    _lead_lock: threading.Lock
    _sync_job: Any
    _retention_job: Any
    #: The term of the lease this node held last (a late renewal resumes it).
    _led_term: int | None = None

    post: Callable[[Work], None]

    @property
    def leading(self) -> bool:
        """Whether this node is the hub's leader now (runs the singleton jobs)."""
        return self.leadership.leading

    def _as_leader(self, work: Work) -> None:
        """Post a singleton job, which runs only if this node still leads when its turn comes."""
        def run() -> None:
            if self.leadership.leading:
                work()
        if self.leadership.leading:
            self.post(run)

    def _leader_sync(self) -> None:
        """The scheduled booking sync, with the term it ran in (fencing, in the log): a
        sync that ran past the end of its term is said so (its results stand: a sync only
        writes what the platform says, and the next leader's sync writes the same)."""
        term = self.leadership.term
        report = self.hub.sync_now()
        (log.info if report.changed else log.debug)(
            "term %s: booking sync %s, %d seen, %d changed, %.1f s", term, "ok" if report.ok else "failed",
            report.seen, len(report.changed), report.seconds)
        if self.leadership.term != term:
            log.warning("the booking sync of term %s ended after that term did (now: %s)", term,
                        self.leadership.term)

    def _gained(self, lease: Lease) -> None:
        """This node took the lease (a lease thread, or ``first_round`` at start): the
        singleton jobs start, the first round of each now."""
        term = lease.term
        with self._lead_lock:
            if self.mailer is None and self.alerter is not None:
                self.mailer = Mailer(self.cfg)
                self.mailer.start()  # it sends what an earlier leader left queued
            self.feedback.start_delivery()
            resumed, self._led_term = self._led_term == term, term
        if resumed:  # a renewal came late, and nobody took the lease meanwhile
            log.warning("leader again (term %d): the jobs resume where they were", term)
            return
        log.info("leader (term %d): booking sync, caches, releases, check-in delivery, retention and alerts "
                 "run on this node", term)

        def in_term(work: Work) -> Work:
            def run() -> None:
                if self.leadership.term == term:
                    work()
            return run

        def converge() -> None:
            if self.link.connected:  # otherwise the link's coming up does it
                self.hub.converge_all()

        for work in (self.hub.rebuild_all, converge):
            self.post(in_term(work))
        soon = _soon()  # the first sync and retention in a second; their intervals count from then
        for job in (self._sync_job, self._retention_job):
            job.modify(next_run_time=soon)

    def _lost(self, term: int, why: str) -> None:
        """This node's lease (``term``) ended (``why``): the singleton jobs stop at once
        (the scheduled ones find ``leading`` False; the threads are stopped here)."""
        log.warning("not the leader any more (term %d ended: %s): the leader's jobs stop on this node", term, why)
        with self._lead_lock:
            self.feedback.stop_delivery()
            mailer, self.mailer = self.mailer, None
        if mailer is not None:
            mailer.stop()

    def _wake_mailer(self) -> None:
        mailer = self.mailer  # the leader's; on another node the leader's mailer polls the queue
        if mailer is not None:
            mailer.wake()
