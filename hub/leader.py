"""Choosing the leader among several hub nodes on one store: each node's heartbeat, and the
leader's lease, on a thread of its own with its own store connection (a long booking sync
on the main loop never holds up a renewal).

Every node (``torwart-hub run``) heartbeats into the store's ``nodes`` and tries to take
or renew the lease (``Store.try_lease``: an atomic compare-and-set) every third of
``[hub] leader_lease_seconds``. The node that holds it is the leader and runs the
singleton jobs (hub/service.py); the others ingest and serve the dashboard and API. A
node that dies stops renewing: another takes the lease once it has expired, within
``leader_lease_seconds``. A node that stops cleanly releases it, and the next takes over
at its next try.

Fencing: the leader counts its lease from the moment *before* it asked (monotonic
clock), so its own view expires no later than the store's. When that moment passes
without a renewal (the store is unreachable or slow, the process was paused), ``leading``
turns False at once and ``on_loss`` is called from a watchdog thread, not from the thread
stuck in the store; a renewal answered with another holder ends it too. Each term of the
lease has its number (``term``), logged with what the leader starts and stops. The nodes'
clocks must agree to well within the lease (NTP), as the store's expiry is compared
across them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from wire import software_version

from .config import HubConfig
from .errors import HubError
from .outage import store_rounds
from .store import Lease, NodeInfo, NodeRow, Store, open_store

log = logging.getLogger(__name__)

#: A node not heard of for this many lease times counts as gone.
GONE_AFTER_LEASES = 2.0


def default_node_name() -> str:
    """A node's name when none is given: ``$TORWART_HUB_NODE``, else the host's name."""
    return os.environ.get("TORWART_HUB_NODE") or socket.gethostname()


def alive(row: NodeRow, now: float, lease_seconds: float) -> bool:
    """Whether ``row``'s node counts as running at ``now`` (it has not stopped and was
    heard of within ``GONE_AFTER_LEASES`` lease times)."""
    return row.role != "stopped" and now - row.last_seen <= GONE_AFTER_LEASES * lease_seconds


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NodeNameTaken(HubError):
    """Another running hub process has this node's name."""


class Leadership:
    """One node's heartbeat and lease (``start``/``stop``); ``leading`` and ``term`` may
    be read from any thread. ``on_gain(lease)`` and ``on_loss(term, why)`` are called from
    this object's threads: they hand work over and return."""

    def __init__(self, cfg: HubConfig, node: str, *, on_gain: Callable[[Lease], None],
                 on_loss: Callable[[int, str], None]) -> None:
        self.cfg = cfg
        self.node = node
        self.seconds = float(cfg.hub.leader_lease_seconds)
        self.every = self.seconds / 3
        self.instance = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.started_at = time.time()
        self._on_gain = on_gain
        self._on_loss = on_loss
        self._cond = threading.Condition()
        self._term: int | None = None
        #: Monotonic moment until which this node's lease is surely valid.
        self._valid_until = 0.0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        #: How many other nodes of the hub run (as of the last heartbeat round).
        self.peers = 0
        self._claimed = False
        self._last_term: int | None = None

    # --- state (any thread) ------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this node holds the lease now (False the moment it may have expired)."""
        with self._cond:
            return self._term is not None and time.monotonic() < self._valid_until

    @property
    def term(self) -> int | None:
        """The term of the lease this node holds, or None."""
        with self._cond:
            return self._term if self._term is not None and time.monotonic() < self._valid_until else None

    def info(self, role: str | None = None) -> NodeInfo:
        return NodeInfo(id=self.node, host=self.host, pid=os.getpid(), version=software_version(),
                        started_at=self.started_at, role=role or ("leader" if self.leading else "follower"),
                        instance=self.instance)

    # --- start and stop ------------------------------------------------------------------------------

    def claim(self, store: Store) -> bool:
        """At start, on the owner's store: refuse (NodeNameTaken) when another running
        process has this node's name; release the lease a dead predecessor of this name
        left behind (so this node may take it at once); record this node. Return whether
        another node of the hub is running."""
        now = time.time()
        others = False
        for row in store.nodes():
            if not alive(row, now, self.seconds) or row.instance == self.instance:
                continue
            if row.id != self.node:
                others = True
                continue
            if row.host == self.host and (row.pid == os.getpid() or _pid_alive(row.pid)):
                raise NodeNameTaken(f"hub node {self.node!r} is running already (pid {row.pid} on {row.host}): "
                                    "give each hub process its own name (torwart-hub run --node NAME)")
            if row.host != self.host:
                raise NodeNameTaken(
                    f"hub node {self.node!r} is running on {row.host} (pid {row.pid}, heard of "
                    f"{now - row.last_seen:.0f} s ago): give each hub process its own name "
                    f"(torwart-hub run --node NAME), or wait {GONE_AFTER_LEASES * self.seconds:.0f} s after it died")
        lease = store.lease()
        if lease is not None and lease.holder == self.node and store.release_lease(self.node, now=now):
            log.info("node %s: released the lease (term %d) an earlier run of this node left behind", self.node,
                     lease.term)
        store.heartbeat_node(self.info("follower"), now=now)
        self._claimed = True
        self.peers = sum(1 for r in store.nodes() if r.id != self.node and alive(r, now, self.seconds))
        return others

    def first_round(self, store: Store) -> None:
        """One try for the lease now, on the caller's store (at start: a node alone leads
        from its first moment, before its broker link is up)."""
        self._round(store)

    def start(self) -> None:
        """Start heartbeating and trying for the lease (the first try is now)."""
        for name, target in (("leader-lease", self._run), ("leader-fence", self._fence)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop; a held lease is released (another node takes over at its next try) and
        this node is recorded as stopped. A node whose ``claim`` was refused touches
        nothing: the name, and maybe the lease, are another process's."""
        self._stopping.set()
        if not self._claimed:
            return
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(self.seconds + 5)
        term = self.term
        with self._cond:
            self._term = None
        try:
            with open_store(self.cfg.hub.store_url) as store:
                now = time.time()
                if store.release_lease(self.node, now=now):
                    log.info("node %s: released the lease (term %s) as it stops", self.node, term)
                store.heartbeat_node(self.info("stopped"), now=now)
        except Exception:
            log.exception("node %s: could not release the lease; another node takes over when it expires", self.node)
        if term is not None:
            self._on_loss(term, "the node stops")

    # --- the threads ----------------------------------------------------------------------------------

    def _run(self) -> None:
        store_rounds(self.cfg.hub.store_url, self._stopping, self._round, self.node, retry=self.every,
                     logger=log, msg="node %s: heartbeat or lease failed; trying again")

    def _round(self, store: Store) -> float:
        """Heartbeat and try for the lease; the seconds until the next try: a third of the
        lease, or sooner, just after another holder's lease expires (so that a dead
        leader's successor takes over within one lease time of its last renewal)."""
        asked = time.monotonic()
        now = time.time()
        lease = store.try_lease(self.node, now=now, seconds=self.seconds)
        gained = lost = None
        with self._cond:
            if lease.held_by(self.node, now) and not self._stopping.is_set():
                self._valid_until = asked + self.seconds
                if self._term != lease.term:
                    lost, self._term, gained = self._term, lease.term, lease
                self._cond.notify_all()
            elif self._term is not None:
                lost, self._term = self._term, None
        if lost is not None:
            self._on_loss(lost, f"node {lease.holder} holds the lease (term {lease.term})")
        if gained is not None:
            self._gained(gained)
        store.heartbeat_node(self.info(), now=now)
        self.peers = sum(1 for r in store.nodes() if r.id != self.node and alive(r, now, self.seconds))
        if lease.holder is not None and lease.holder != self.node:
            return max(0.05, min(self.every, lease.expires_at - time.time() + 0.05))
        return self.every

    def _gained(self, lease: Lease) -> None:
        if lease.term == self._last_term:
            log.warning("node %s leads again (term %d): its renewal came late, and no other node took over",
                        self.node, lease.term)
        else:
            log.warning("node %s is the leader now (term %d): %.1f s without a leader since %s",
                        self.node, lease.term, lease.vacant,
                        f"node {lease.previous}'s lease ended" if lease.previous else "the hub started")
        self._last_term = lease.term
        self._on_gain(lease)

    def _fence(self) -> None:
        """Ends the leadership the moment its lease may have expired without a renewal."""
        while not self._stopping.is_set():
            with self._cond:
                if self._term is None:
                    self._cond.wait(self.every)
                    continue
                left = self._valid_until - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                term, self._term = self._term, None
            log.error("node %s: the lease (term %d) was not renewed in time; the leader's jobs stop now",
                      self.node, term)
            self._on_loss(term, "the lease was not renewed in time")
