"""The records of several hub nodes on one store: the nodes' heartbeats, the leader's
lease, and the change feed that tells every node what another one stored (the SQLite
side: store/sqlite/nodes.py; re-exported by ``hub.store``).

Times are Unix seconds (REAL) of the writing node's clock: the nodes of one hub keep
their clocks in step (NTP), as the lease's expiry is compared across them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a running node says about itself with each heartbeat."""

    #: The node's name (``torwart-hub run --node``; default the host name), unique per hub.
    id: str
    host: str
    pid: int
    version: str
    started_at: float
    #: ``leader``, ``follower``, or ``stopped`` (it ended cleanly).
    role: str
    #: A random token per process: tells a node's restart from a second process of its name.
    instance: str


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A node as the store last heard of it (``last_seen``: its latest heartbeat)."""

    id: str
    host: str
    pid: int
    version: str
    started_at: float
    last_seen: float
    role: str
    instance: str


@dataclass(frozen=True, slots=True)
class Lease:
    """The leader's lease: held by ``holder`` (a node id; None once released) until
    ``expires_at``. ``term`` counts the changes of holder (fencing: what a leader does
    carries its term). ``acquired_at`` is when this term began, ``renewed_at`` its last
    renewal; ``vacant`` the seconds the hub had no leader before it (from the previous
    term's expiry or release), ``previous`` that term's holder."""

    holder: str | None
    term: int
    expires_at: float
    acquired_at: float
    renewed_at: float
    vacant: float
    previous: str | None

    def held_by(self, node: str, now: float) -> bool:
        """Whether ``node`` holds the lease at ``now``."""
        return self.holder == node and self.expires_at > now


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: ``node`` stored new state of kind ``what`` (status,
    door, occupancy, events, cache) for ``site_id`` at ``at``; ``id`` grows."""

    id: int
    node: str
    site_id: str
    what: str
    at: float
