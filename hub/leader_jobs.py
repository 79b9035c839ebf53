"""The leader's side of the running hub (``HubService``): which jobs run only on the node
that holds the leader's lease (hub/leader.py), and how they start when it becomes the
leader and stop when it loses the lease.

The scheduled singleton jobs (booking sync, watching and publishing cache versions, the
periodic rebuild, retention, no-show release, the alerts' offline check) go through
``_as_leader``: posted only while this node leads, and run only if it still does when
their turn on the main loop comes. The worker threads (check-in delivery, the alert
mailer, webhook and Web Push senders) are started by ``_gained`` and stopped by ``_lost``, which the lease's threads
call the moment the lease is taken or ends.

Each run of the booking sync and of the no-show release is logged where it starts and
where it ends (``job_run``), with the node's name, the lease's term and wall-clock times:
which node ran what when, and that no two nodes ran one of them at once, can be read
from the nodes' logs (``JOB_LINE`` parses them; the chaos run's multi-node variant does).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .alerts.alerter import Alerter
from .alerts.mailer import Mailer
from .alerts.pusher import PushSender
from .alerts.webhooks import WebhookSender
from .changes import KEEP_SECONDS
from .config import HubConfig
from .core import Hub
from .errors import HubError
from .feedback import Feedback
from .leader import Leadership
from .link import HubLink
from .store import Lease, Store
from .sync import SyncReport

log = logging.getLogger(__name__)

Work = Callable[[], object]

#: A ``job_run`` line: job, started/ended/failed, node, term, wall time (and the seconds it ran).
JOB_LINE = re.compile(r"job (?P<job>[\w-]+) (?P<what>started|ended|failed) on node (?P<node>\S+) "
                      r"\(term (?P<term>\d+|None)\) at (?P<at>\d+\.\d+)")


def _soon() -> Any:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


class LeaderJobs:
    """Mixed into ``HubService``: the leader's jobs (see the module's docstring)."""

    cfg: HubConfig
    node: str
    leadership: Leadership
    hub: Hub
    link: HubLink
    feedback: Feedback
    store: Store
    alerter: Alerter | None
    mailer: Mailer | None
    webhooks: WebhookSender | None
    pusher: PushSender | None
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

    @contextlib.contextmanager
    def job_run(self, job: str) -> Iterator[int | None]:
        """Log the start and the end (``ended``, or ``failed`` when it raised) of one run of
        the singleton job ``job`` on this node, each with the node's name, the lease's term
        and the wall-clock time (``JOB_LINE``); yields the term."""
        term = self.leadership.term
        started = time.time()
        log.info("job %s started on node %s (term %s) at %.3f", job, self.node, term, started)
        outcome = "failed"
        try:
            yield term
            outcome = "ended"
        finally:
            now = time.time()
            log.info("job %s %s on node %s (term %s) at %.3f, %.3f s", job, outcome, self.node, term, now,
                     now - started)

    def _leader_sync(self) -> None:
        """The scheduled booking sync, with the term it ran in (fencing, in the log): a
        sync that ran past the end of its term is said so (its results stand: a sync only
        writes what the platform says, and the next leader's sync writes the same). The
        platform is read on a thread (``Hub.sync_in_background``): the loop goes on with
        the sites' messages meanwhile; a turn that finds the previous sync still reading
        starts none. Its run is logged (``job_run``) from the start of the reading to the
        end of the storing and publishing."""
        if self.hub.sync_reading:
            log.debug("the previous booking sync is still reading; this turn is skipped")
            return
        run = self.job_run("booking-sync")
        term = run.__enter__()

        def done(report: SyncReport | None) -> None:
            if report is None:  # storing it failed, or the lease was lost meanwhile (the loop logged why)
                run.__exit__(HubError, HubError("the booking sync failed or was dropped"), None)
                return
            run.__exit__(None, None, None)
            (log.info if report.changed else log.debug)(
                "term %s: booking sync %s, %d seen, %d changed, %.1f s", term, "ok" if report.ok else "failed",
                report.seen, len(report.changed), report.seconds)
            if self.leadership.term != term:
                log.warning("the booking sync of term %s ended after that term did (now: %s)", term,
                            self.leadership.term)

        try:
            self.hub.sync_in_background(done, still_leading=lambda: term is not None and self.leadership.term == term)
        except BaseException as exc:
            run.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _leader_release(self) -> None:
        """The scheduled no-show release (``release_no_shows``), its run logged (``job_run``)."""
        with self.job_run("no-show-release"):
            self.release_no_shows()

    def _gained(self, lease: Lease) -> None:
        """This node took the lease (a lease thread, or ``first_round`` at start): the
        singleton jobs start, the first round of each now."""
        term = lease.term
        with self._lead_lock:
            if self.mailer is None and self.alerter is not None:
                self.mailer = Mailer(self.cfg)
                self.mailer.start()  # it sends what an earlier leader left queued
            if self.webhooks is None and self.cfg.alerts is not None and self.cfg.alerts.webhooks:
                self.webhooks = WebhookSender(self.cfg)
                self.webhooks.start()
            if self.pusher is None and self.alerter is not None:
                self.pusher = PushSender(self.cfg)
                self.pusher.start()
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
            workers = (self.mailer, self.webhooks, self.pusher)
            self.mailer = self.webhooks = self.pusher = None
        for worker in workers:
            if worker is not None:
                worker.stop()

    # --- the singleton jobs ------------------------------------------------------------------------

    def _check_alerts(self) -> None:
        """Offline sites, slow conditions, the booking sync, reminders and escalations."""
        if self.alerter is not None:
            self.alerter.tick()

    def release_no_shows(self, now: int | None = None) -> list[str]:
        """Queue the releases of no-shows as of ``now`` (default: the clock); the ids queued."""
        return self.feedback.release_no_shows(int(time.time()) if now is None else now)

    def _keys_step(self) -> None:
        """A signing-key rotation's next step, when there is one (``Hub.keys_step``)."""
        done = self.hub.keys_step()
        if done is not None:
            log.info("signing keys: %s", done)

    def _rebuild_all(self) -> None:
        # Entries depend on now (the booking window) and versions need fresh expiry.
        self.hub.changed({s.id for s in self.cfg.sites})

    def sync_now(self) -> SyncReport:
        """One booking sync now, and the changed sites' caches out (``Hub.sync_now``)."""
        return self.hub.sync_now()

    def _retention(self) -> None:
        days = self.cfg.hub.retention_days
        now = time.time()
        n = self.store.purge_events(now - days * 86400)
        b = self.store.purge_bookings(int(now) - days * 86400)
        self.store.purge_enrollments(int(now) - days * 86400)
        self.store.purge_feedback(now - days * 86400)
        self.store.purge_alerts(now - days * 86400)
        self.store.purge_audit(now - days * 86400)
        self.store.purge_changes(now - KEEP_SECONDS)
        if n or b:
            log.info("retention (%d days): deleted %d events and %d ended bookings", days, n, b)
