"""Live change notices from the hub's main loop to the dashboard's Server-Sent Events.

The main loop calls ``Live.notify(site, what)`` after it has stored something a site
reported (status, a door, occupancy, events) or a new cache version. Each open SSE
stream holds a ``Subscription`` for the sites its user may see; a notice for one of those
sites marks the site as changed and wakes the stream on its own asyncio loop
(``call_soon_threadsafe``). Notices coalesce: a burst of a thousand events wakes a stream
once, and the stream then reads the site's current state, so a slow client never
builds up a backlog. ``notify`` never blocks the main loop for longer than a lock hold.
With several hub nodes, a node's notices also go into the store's change feed and the
other nodes' streams hear of them from there (hub/changes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


class Subscription:
    """The changed sites one stream has not yet taken; bound to the asyncio loop that
    created it (``Live.subscribe`` must be called on that loop)."""

    def __init__(self, live: Live, sites: frozenset[str]) -> None:
        self.sites = sites
        self._live = live
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False

    def _mark(self, site: str | None) -> None:
        """From any thread: ``site`` changed (None: the hub is closing)."""
        with self._lock:
            if site is None:
                self.closed = True
            else:
                self._pending.add(site)
        with contextlib.suppress(RuntimeError):  # the stream's loop is gone already
            self._loop.call_soon_threadsafe(self._wake.set)

    async def changed(self, timeout: float) -> set[str]:
        """Wait up to ``timeout`` s for changes; return the changed sites (empty on
        timeout or when closed: check ``closed``)."""
        if not self._pending and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
        with self._lock:
            out, self._pending = self._pending, set()
        return out

    def close(self) -> None:
        self._live._drop(self)
        self.closed = True


class Live:
    """Thread-safe fan-out of "site X changed" notices to subscriptions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._closed = False
        #: Notices so far (for tests and diagnostics).
        self.notices = 0
        #: Told of every notice of this node (not of those relayed from other nodes):
        #: the change feed that passes them on to the hub's other nodes (hub/changes.py).
        self.relay: Callable[[str, str], None] | None = None

    def subscribe(self, sites: Iterable[str]) -> Subscription:
        """A subscription to ``sites``; call on the asyncio loop that will wait on it."""
        sub = Subscription(self, frozenset(sites))
        with self._lock:
            if self._closed:
                sub.closed = True
            else:
                self._subs.add(sub)
        return sub

    def notify(self, site: str, what: str = "", *, relayed: bool = False) -> None:
        """``site`` has new state of kind ``what`` (status, door, occupancy, events, cache);
        ``relayed``: another node stored it (and this node is not to pass it on again)."""
        relay = self.relay
        if relay is not None and not relayed:
            relay(site, what)
        with self._lock:
            self.notices += 1
            subs = [s for s in self._subs if site in s.sites]
        for s in subs:
            s._mark(site)
        if subs:
            log.debug("live: site %s %s → %d streams", site, what, len(subs))

    def close(self) -> None:
        """End every stream (the hub is stopping); later subscriptions start closed."""
        with self._lock:
            self._closed = True
            subs, self._subs = list(self._subs), set()
        for s in subs:
            s._mark(None)

    def _drop(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def streams(self) -> int:
        with self._lock:
            return len(self._subs)
