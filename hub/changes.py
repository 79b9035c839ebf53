"""Live notices between the nodes of one hub, through the store's change feed.

A browser's live view (hub/live.py) follows the node it is connected to, but another node
may have stored the change (ingested a site's events, published a cache). So each node
appends its own notices to the store's ``changes`` (coalesced: one row per site and kind
per round of its main loop; not those every node hears from the broker itself: status,
doors, occupancy), and reads the rows of the other nodes every ``POLL_SECONDS``
(one indexed query on an id, on a thread of its own with its own store connection) into
its ``Live`` as relayed notices. A node alone (no other node heard of within two lease
times) writes nothing: one hub process pays nothing for this. A node that joins hears the
others' notices from the next heartbeat round on; its browsers read the current state
when they connect anyway.

Measured on this project's 2-core test machine, SQLite store: appending a round's notices
(one transaction) 0.24 ms, an empty poll 11 µs, so a node's reader costs about 22 µs of
store time a second; a notice reaches another node's streams within one poll
(tests/hub/test_changes.py asserts under 1.5 s; typically 0.5 s or less). A PostgreSQL
store may add LISTEN/NOTIFY behind the same ``Store.changes_since`` to cut the wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import HubConfig
from .live import Live
from .outage import store_rounds
from .store import Store

log = logging.getLogger(__name__)

#: How often a node reads the other nodes' notices.
POLL_SECONDS = 0.5
#: What every node hears from the broker itself (retained topics, subscribed by each node):
#: not passed on. Events (shared: one node takes each batch) and caches (built and
#: published by one node) are.
EVERY_NODE_HEARS = frozenset({"status", "door", "occupancy"})
#: Notices are kept this long in the store (the leader's retention purges older ones).
KEEP_SECONDS = 3600.0


@dataclass
class FeedStats:
    #: Rows this node appended.
    written: int = 0
    #: Other nodes' notices passed to this node's streams.
    relayed: int = 0
    #: Seconds from the other node's write to this node's read, of the latest relayed notice.
    last_delay: float = 0.0


class ChangeFeed:
    """One node's part of the change feed: ``note`` (any thread) and ``flush`` (the
    store's owner) going out; ``start``/``stop`` the reader coming in."""

    def __init__(self, cfg: HubConfig, node: str, store: Store, live: Live, *, peers: Callable[[], bool],
                 post: Callable[[Callable[[], object]], None]) -> None:
        """``store`` is the owner's (used only in ``flush``, which ``post`` runs on its loop)."""
        self.cfg = cfg
        self.store = store
        self.node = node
        self.live = live
        self.stats = FeedStats()
        self._peers = peers
        self._post = post
        self._lock = threading.Lock()
        self._pending: set[tuple[str, str]] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- this node's notices out ---------------------------------------------------------------------

    def note(self, site: str, what: str) -> None:
        """A notice of this node (``Live.relay``): queued, and a flush posted for the
        first of a round, when other nodes run (not what every node hears itself)."""
        if what in EVERY_NODE_HEARS or not self._peers():
            return
        with self._lock:
            first = not self._pending
            self._pending.add((site, what))
        if first:
            self._post(self.flush)

    def flush(self) -> None:
        """Append the queued notices to the feed (on the loop that owns the store)."""
        with self._lock:
            rows, self._pending = sorted(self._pending), set()
        if rows:
            self.store.record_changes(self.node, rows, at=time.time())
            self.stats.written += len(rows)

    # --- the other nodes' notices in -----------------------------------------------------------------

    def start(self, after: int) -> None:
        """Read the feed's rows above ``after`` (``Store.last_change`` at start) from now on."""
        self._thread = threading.Thread(target=self._run, args=(after,), name="change-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, after: int) -> None:
        def read(store: Store) -> float:
            nonlocal after
            after = self._read(store, after)
            return POLL_SECONDS

        store_rounds(self.cfg.hub.store_url, self._stopping, read, retry=POLL_SECONDS, logger=log,
                     msg="change feed: reading the other nodes' notices failed; trying again")

    def _read(self, store: Store, after: int) -> int:
        while True:
            rows = store.changes_since(after, limit=1000)
            if not rows:
                return after
            now = time.time()
            for r in rows:
                if r.node != self.node:
                    self.live.notify(r.site_id, r.what, relayed=True)
                    self.stats.relayed += 1
                    self.stats.last_delay = now - r.at
            after = rows[-1].id
            if len(rows) < 1000:
                return after
