"""The running hub (``torwart-hub run``): booking sync, cache building and publishing,
ingest of every site's messages, and the HTTP side (webhook, admin API, health).

The acts (push a cache, send a command, enroll, sync, ...) are the application core's
(``hub.core.Hub``); this loop routes the sites' messages and the schedule to them, and
hands the same core to the HTTP side.

Threads meet at one queue, as on the edge: paho's network thread, the HTTP server and
APScheduler jobs only hand work to the main loop, which alone uses the store connection.
The booking-feedback worker (hub/feedback_delivery.py) sends queued check-ins and
releases to the platform with its own store connection, off the main loop. Events are
ingested in batches (one transaction and one ack per site per batch), which is what keeps
up with a county's sites.

Several nodes (``torwart-hub run`` with one config and one store on several machines, or
several processes with ``--node``) share the ingest through the MQTT 5 shared
subscription and each serves the dashboard and API; the singleton jobs (booking sync,
cache building and publishing, no-show release, check-in delivery, retention, alerts'
offline check and mail) run only on the node that holds the leader's lease
(hub/leader.py): they start when it becomes the leader and stop the moment it loses the
lease. A follower records what it changes (a cache version after an API act) and leaves
publishing it to the leader. Live notices reach the other nodes' dashboards through the
store's change feed (hub/changes.py).

One site cannot hold up another: a message larger than its topic's limit is refused on
paho's thread before it is queued (hub.limits), and whatever fails while one site's
messages, batch or cache are handled is logged and leaves the other sites' work done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler

from wire import messages as m
from wire.entrypoint import stop_on_signals
from wire.errors import WireError
from wire.handoff import WorkQueue
from wire.keys import read_key_file
from wire.topics import Kind

from . import ha_control, homeassistant
from .alerts.alerter import Alerter
from .alerts.mailer import Mailer
from .alerts.pusher import PushSender
from .alerts.webhooks import WebhookSender
from .changes import ChangeFeed
from .config import HubConfig
from .core import Hub, each_site
from .core.errors import UnknownSite
from .feedback import Feedback
from .ingest import Ingest
from .leader import Leadership, default_node_name
from .leader_jobs import LeaderJobs
from .limits import RefusalTally, SiteLimits
from .link import HubLink, node_client_id, share_group
from .live import Live
from .outage import log_failure
from .runlock import RunLock
from .store import open_store

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[], object]
EVENT_BATCH = 1000


class HubService(LeaderJobs):
    def __init__(self, cfg: HubConfig, node: str | None = None) -> None:
        """``node``: this process's name among the hub's nodes (default: ``$TORWART_HUB_NODE``
        or the host's name)."""
        self.cfg = cfg
        self.node = node or default_node_name()
        self._work = WorkQueue()
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self._events: dict[str, list[bytes]] = defaultdict(list)
        self._events_lock = threading.Lock()
        self._events_posted = False
        self.limits = SiteLimits(cfg)
        self._refusals = RefusalTally()
        self._sched = BackgroundScheduler(timezone="UTC")
        self.web: Any = None
        #: Change notices for the dashboard's live view (any thread may wait on it).
        self.live = Live()
        #: Alerts by e-mail (hub/alerts), with ``[alerts]`` only.
        self.alerter: Alerter | None = None
        #: Home Assistant's requests, with ``[homeassistant] control`` only.
        self.ha: ha_control.HaControl | None = None
        self.mailer: Mailer | None = None
        #: Alerts as signed webhooks, with ``[[alerts.webhooks]]`` only.
        self.webhooks: WebhookSender | None = None
        #: Alerts as Web Push notifications, with ``[alerts]``.
        self.pusher: PushSender | None = None
        #: This node's heartbeat and lease; the change feed to and from the other nodes.
        self.leadership = Leadership(cfg, self.node, on_gain=self._gained, on_loss=self._lost)
        self.changes: ChangeFeed | None = None
        self._lead_lock = threading.Lock()

    # --- the loop ------------------------------------------------------------------------------

    def post(self, work: Work) -> None:
        self._work.post(work)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the main loop and return its result (from another thread)."""
        return self._work.call(fn, timeout)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            self._startup()
            self._work.run(self._stopping, lambda exc: log_failure(log, exc, "work item failed; the hub carries on"))
        finally:
            self._shutdown()

    def _startup(self) -> None:
        cfg = self.cfg
        cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._run_lock = RunLock.acquire(cfg.hub.data_path, exclusive=False)  # restore waits for us
        self.store = open_store(cfg.hub.store_url)
        others = self.leadership.claim(self.store)  # refused if another process runs with this name
        control = cfg.homeassistant.control
        # The share group's secret is the store's, the same for every node and through a
        # signing-key rotation (hub/link.py: no site can name the group).
        self.link = HubLink(cfg.mqtt, self, client_id=node_client_id(cfg.mqtt, self.node),
                            share_group=share_group(self.store.hub_secret("mqtt-share-group")),
                            leave_groups=(share_group(read_key_file(cfg.hub.signing_key_file)),),
                            requests=ha_control.FILTERS if control else (),
                            on_request=self._ha_request if control else None)
        #: The application core: every act on sites and people goes through it.
        self.hub = Hub(cfg, self.store, link=self.link, live=self.live, post=self.post)
        self.hub.publishing = lambda: self.leadership.leading
        self.ingest = Ingest(self.store, self._ack_events, self._on_event)
        if control:
            self.ha = ha_control.HaControl(cfg, self.hub, self.link.publish_topic)
        self.feedback = Feedback(cfg, self.store, supports_write=self.hub.platform_writes)
        # Before the link: the sites' retained statuses find it watching. A node that
        # joins running nodes keeps what they saw; delivery is the leader's.
        self.feedback.start(forget=not others, deliver=False)
        self._start_alerts()
        self.changes = ChangeFeed(cfg, self.node, self.store, self.live, peers=lambda: self.leadership.peers > 0,
                                  post=self.post)
        self.live.relay = self.changes.note
        self.changes.start(self.store.last_change())
        self.link.blocked = self.hub.blocked_sites()
        b = cfg.booking
        lead = self._as_leader  # every singleton job: it runs only while this node leads
        self._sync_job = self._sched.add_job(lambda: lead(self._leader_sync), "interval",
                                             seconds=b.sync_interval_seconds)
        self._sched.add_job(lambda: lead(self.hub.watch_versions), "interval", seconds=2)
        self._sched.add_job(lambda: lead(self._keys_step), "interval", seconds=2)
        self._sched.add_job(lambda: self.post(self._watch_revoked), "interval", seconds=1)
        self._sched.add_job(lambda: lead(self._rebuild_all), "interval", minutes=15)
        self._retention_job = self._sched.add_job(lambda: lead(self._retention), "interval", hours=6)
        if any(cfg.no_show_minutes(s.id) is not None for s in cfg.sites):
            self._sched.add_job(lambda: lead(self._leader_release), "interval", minutes=1)
        self._sched.start()
        self.leadership.first_round(self.store)  # a node alone leads from the start (before the link)
        self.link.start()
        self.leadership.start()
        from .web import start_web

        self.web = start_web(self.hub)
        self.ready.set()
        log.info("hub running: node %s, %d sites, HTTP on %s", self.node, len(cfg.sites), cfg.http.listen)

    def _start_alerts(self) -> None:
        """With ``[alerts]``: alert decisions on every node (each on the events it
        ingests; the store opens an alert once); the offline check on the schedule and
        the mailer thread (``_gained``) on the leader."""
        if self.cfg.alerts is None:
            return
        self.alerter = Alerter(self.cfg, self.store, self._wake_delivery, self.live.notify)
        a = self.cfg.alerts
        shortest = min(a.offline_minutes, a.escalate_minutes, a.remind_minutes, a.clock_minutes, a.cache_minutes,
                       a.denials_minutes) * 60.0
        every = max(0.5, min(5.0, shortest / 4))
        self._sched.add_job(lambda: self._as_leader(self._check_alerts), "interval", seconds=every)

    def _wake_delivery(self) -> None:
        """Something was queued: every channel's worker looks (each takes its own rows; the
        leader's: on another node the leader's workers poll the queue)."""
        for worker in (self.mailer, self.webhooks, self.pusher):
            if worker is not None:
                worker.wake()

    def _watch_revoked(self) -> None:
        """Sites revoked by the command line (``torwart-hub site revoke``) get nothing more."""
        self.link.blocked = self.hub.blocked_sites()

    def _shutdown(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)
        self.leadership.stop()  # releases the lease: another node takes over at its next try
        if self.changes is not None:
            self.changes.stop()
        self.live.close()  # ends the SSE streams, so that the HTTP server can stop
        if self.web is not None:
            self.web.stop()
        if hasattr(self, "link"):
            self.link.stop()
        if hasattr(self, "feedback"):
            self.feedback.close()
        for worker in (self.mailer, self.webhooks, self.pusher):
            if worker is not None:
                worker.stop()
        if hasattr(self, "hub"):
            self.hub.close()
        if hasattr(self, "store"):
            self.store.close()
        if hasattr(self, "_run_lock"):
            self._run_lock.release()
        log.info("hub stopped")

    # --- MQTT (paho thread) ------------------------------------------------------------------------

    def link_up(self) -> None:
        self._as_leader(self.hub.converge_all)
        self.post(lambda: homeassistant.publish(self.cfg, self.link.publish_topic))

    def site_message(self, site: str, kind: Kind, door: str | None, payload: bytes) -> None:
        too_large = self.limits.too_large(site, kind, len(payload))
        if too_large is not None:  # never decoded, never queued
            self.refuse(site, f"{kind.value}:too_large", too_large)
            return
        if kind is Kind.EVENT:
            with self._events_lock:
                self._events[site].append(payload)
                if self._events_posted:
                    return
                self._events_posted = True
            self.post(self._drain_events)
        elif kind is Kind.STATUS:
            self.post(lambda: self._status(site, payload))
        elif kind is Kind.DOOR:
            self.post(lambda: self._notify(site, "door", self.ingest.door(site, door, payload)))
        elif kind is Kind.OCCUPANCY:
            self.post(lambda: self._occupancy(site, payload))
        elif kind is Kind.CACHE_ACK:
            self.post(lambda: self._cache_ack(site, payload))
        elif kind is Kind.COMMAND_ACK:
            self.post(lambda: self._command_ack(site, payload))

    def _ha_request(self, name: str, payload: bytes, retained: bool) -> None:
        ha = self.ha
        if ha is not None:
            self.post(lambda: ha.handle(name, payload, retained))

    def refuse(self, site: str, kind: str, reason: str) -> None:
        """Count a message refused from ``site`` (``kind``: ``topic:reason``); any thread.
        The counts reach the store, and the log, in bulk on the main loop."""
        if not self.limits.knows(site):
            log.debug("refused a message (%s) on the topics of unknown site %r: %s", kind, site, reason)
            return
        if not kind.startswith(f"{Kind.EVENT.value}:") and not self.leading:
            # Every node hears the other topics (status, doors, ...): the leader counts them, once.
            log.debug("site %s: refused a message (%s): %s (counted by the leader)", site, kind, reason)
            return
        if self._refusals.add(site, kind, reason):
            self.post(self._flush_refusals)

    # --- handlers (main loop) ------------------------------------------------------------------------

    def _flush_refusals(self) -> None:
        counted = self._refusals.take()
        for site, kind, n, reason in counted:
            log.warning("site %s: refused %d message(s) (%s), the last: %s", site, n, kind, reason)
        self.store.record_refusals(counted, at=time.time())

    def _configured(self, site: str) -> bool:
        try:
            self.hub.site(site)
            return True
        except UnknownSite:
            log.warning("message from unknown site %r dropped", site)
            return False

    def _drain_events(self) -> None:
        with self._events_lock:
            batches, self._events = self._events, defaultdict(list)
            self._events_posted = False

        def drain(site: str) -> None:
            if not self._configured(site):
                return
            payloads = batches[site]
            for i in range(0, len(payloads), EVENT_BATCH):
                self.ingest.events(site, payloads[i : i + EVENT_BATCH])
            self.feedback.watch_events(site)
            self.live.notify(site, "events")

        # A batch that fails is not acknowledged: its site sends it again.
        each_site(list(batches), "event batch", drain)

    def _notify(self, site: str, what: str, stored: bool) -> None:
        if stored:
            self.live.notify(site, what)

    def _occupancy(self, site: str, payload: bytes) -> None:
        try:
            occ = m.decode(payload, m.Occupancy)
        except WireError:
            occ = None  # the ingest logs and counts it
        refusal = None if occ is None else self.limits.occupancy_refusal(site, occ)
        if refusal is not None:
            self.refuse(site, f"{Kind.OCCUPANCY.value}:{refusal[0]}", refusal[1])
            return
        self._notify(site, "occupancy", self.ingest.occupancy(site, payload))

    def _command_ack(self, site: str, payload: bytes) -> None:
        ack = self.ingest.command_ack(site, payload)
        if ack is not None:
            self.hub.enrollment_acked(site, ack)

    def _ack_events(self, site: str, stream: str, upto: int) -> None:
        self.link.publish(site, Kind.EVENT_ACK, m.encode(m.EventAck(stream=stream, upto=upto)))

    def _on_event(self, site: str, ev: m.Event) -> None:
        """What a stored event sets off; a failure is logged and the batch's other events
        (and the other sites' batches) are handled all the same."""
        try:
            self._after_event(site, ev)
        except Exception:
            log.exception("site %s: handling event %s (%s) failed; the event is stored", site, ev.seq, ev.type)

    def _after_event(self, site: str, ev: m.Event) -> None:
        if self.alerter is not None:
            self.alerter.on_event(site, ev)
        if isinstance(ev, m.OccupancyCheckin) and ev.ref is not None:
            self.feedback.checked_in(site, ev)
        elif isinstance(ev, m.EnrollRead):  # a card enrolled at a site (hub.core.enrolling)
            self.hub.on_enroll_read(site, ev)

    def _status(self, site: str, payload: bytes) -> None:
        if not self._configured(site):
            return
        st = self.ingest.status(site, payload)
        if st is not None:
            self.feedback.watch_status(site, st, time.time())
            self._status_alerts(site, st)
        self._notify(site, "status", st is not None)
        if not self.leading:  # every node hears each status; the leader brings the site's caches out
            return
        if st is not None and st.state == "online" and self._issued(site, Kind.STATUS, st.cache_version):
            self.hub.converge(site, st.cache_version)

    def _status_alerts(self, site: str, st: m.Status) -> None:
        """Storage error and lockdown alerts from a Status; a failure is logged and the
        status handled all the same."""
        if self.alerter is None:
            return
        try:
            self.alerter.on_status(site, st)
        except Exception:
            log.exception("site %s: alerts from its status failed; the status is stored", site)

    def _cache_ack(self, site: str, payload: bytes) -> None:
        if not self._configured(site):
            return
        ack = self.ingest.cache_ack(site, payload)
        if ack is None:
            return
        self.live.notify(site, "cache")
        if not self.leading:  # every node hears each ack; the leader answers it
            return
        state = self.store.site_state(site)
        reported = state.cache_version if state is not None else None
        if not self._issued(site, Kind.CACHE_ACK, ack.version):
            return
        if ack.ok:
            self.hub.converge(site, ack.version)
        else:
            self.hub.cache_refused(site, ack.error, reported, ack.version)

    def _issued(self, site: str, kind: Kind, version: int | None) -> bool:
        """Whether ``version``, reported by ``site``, may be one the hub issued; a version
        too far above them (Publisher.unissued) is refused and counted."""
        why = self.hub.unissued(site, version)
        if why is not None:
            self.refuse(site, f"{kind.value}:unissued_version", why)
        return why is None



def run(cfg: HubConfig, node: str | None = None) -> int:
    """``torwart-hub run``: serve until SIGTERM/SIGINT; return the exit status."""
    service = HubService(cfg, node)
    stop_on_signals(service.stop)
    service.run()
    return 0
