"""A county of two sites behind a broker with the PROTOCOL.md §2 ACL, the real hub service on
a thread, and each site's broker login in the hands of a test client: ``a`` plays the
compromised site (anything its ACL lets it publish), ``b`` the honest one whose events must
keep being stored and acknowledged and whose cache must keep following its bookings."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.service import HubService
from testkit.booking_fake import BookingPlatform
from testkit.county import County, HubThread
from testkit.mqttclient import Message, TestClient
from testkit.util import wait_for
from wire import envelope
from wire import messages as m
from wire.topics import Kind, topic

A, B = "site-a", "site-b"
MEMBER, CARD = "m-1", "em4100:0A00B1C2D3"


def event(site: str, seq: int, **extra: Any) -> bytes:
    """A door.opened of ``site`` with ``seq`` (not checked: any int) and ``extra`` fields."""
    return m.encode({"type": "door.opened", "id": uuid.uuid4().hex, "site": site, "seq": seq, "boot": "b",
                     "ts": 1_800_000_000.0, "clock_synced": True, "door": "eingang", **extra})


@dataclass
class Rig:
    county: County
    hub: HubThread
    platform: BookingPlatform
    clients: dict[str, TestClient]
    b_seq: int = 0
    a_seq: int = 0
    _bookings: int = 0
    _inbox: list[Message] = field(default_factory=list)

    @property
    def svc(self) -> HubService:
        return self.hub.service

    @property
    def store_path(self) -> Path:
        return Path(self.svc.cfg.hub.store_path)

    def publish(self, site: str, kind: Kind, payload: bytes, door: str | None = None) -> None:
        self.clients[site].publish(topic(site, kind, door), payload)

    def a_barrier(self) -> None:
        """Site a sends its next event and waits for its ack: whatever site a published
        before has been handled by then (one broker session, delivered in order, handled
        in order on the hub's main loop)."""
        self.a_seq += 1
        c = self.clients[A]
        self.publish(A, Kind.EVENT, event(A, self.a_seq))
        upto = self.a_seq
        wait_for(lambda: any(x.topic == topic(A, Kind.EVENT_ACK) and m.decode(x.payload, m.EventAck).upto >= upto
                             for x in c.drain()), 30, what=f"site a's event {upto} acked")

    # --- the honest site -----------------------------------------------------------------

    def _take(self, kinds: tuple[Kind, ...]) -> list[Message]:
        """What the hub sent site b on topics of ``kinds`` since the last look (others are kept)."""
        self._inbox.extend(self.clients[B].drain())
        names = {topic(B, k) for k in kinds}
        taken = [x for x in self._inbox if x.topic in names]
        self._inbox = [x for x in self._inbox if x.topic not in names]
        return taken

    def b_events_acked(self, n: int = 3, timeout: float = 30) -> int:
        """Site b sends ``n`` more events; wait until the hub acknowledges all of them."""
        first = self.b_seq + 1
        self.b_seq += n
        for seq in range(first, self.b_seq + 1):
            self.publish(B, Kind.EVENT, event(B, seq))
        self.wait_b_acked(self.b_seq, timeout)
        return self.b_seq

    def wait_b_acked(self, upto: int, timeout: float = 30) -> None:
        wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto >= upto for x in self._take((Kind.EVENT_ACK,))),
                 timeout, what=f"site b's events acked up to {upto}")

    def book(self, site: str, *, hours: float = 1.0) -> str:
        """A confirmed booking of ``site``'s room for MEMBER, from now (at the platform)."""
        self._bookings += 1
        bid = f"bk-{site}-{self._bookings}"
        now = dt.datetime.now(dt.UTC)
        self.platform.add(bid, self.county.resource(site), MEMBER, now, now + dt.timedelta(hours=hours))
        return bid

    def sync(self) -> None:
        report = self.svc.call(self.svc.sync_now, timeout=60)
        assert report.ok, report.error

    def b_holds_latest(self) -> int:
        """Site b reports (online) that it holds the hub's latest version of its cache."""
        version = self.svc.call(lambda: self.svc.hub.caches.latest_version(B))
        assert version is not None
        self.publish(B, Kind.STATUS, m.encode(m.Status(state="online", ts=1_800_000_000.0, boot="b",
                                                       cache_version=version)))
        wait_for(lambda: (st := self.svc.call(lambda: self.svc.store.site_state(B))) is not None
                 and st.online and st.cache_version == version, 20, what="site b's status recorded")
        self._take((Kind.CACHE, Kind.CACHE_DELTA))
        return version

    def wait_b_cache(self, above: int, timeout: float = 30) -> m.CacheFull | m.CacheDelta:
        """The next cache.full or cache.delta the hub publishes to site b with a version
        above ``above`` (verified with the hub's public key, as the site would)."""
        keys = envelope.trusted_keys(self.county.hub_key.public_key())
        found: list[m.CacheFull | m.CacheDelta] = []

        def published() -> bool:
            for x in self._take((Kind.CACHE, Kind.CACHE_DELTA)):
                body = envelope.open_body(x.payload, keys, B)
                if isinstance(body, (m.CacheFull, m.CacheDelta)) and body.version > above:
                    found.append(body)
            return bool(found)

        wait_for(published, timeout, what=f"a cache above version {above} published to site b")
        return found[-1]

    # --- the hub -------------------------------------------------------------------------

    @contextlib.contextmanager
    def main_loop_held(self) -> Iterator[None]:
        """Hold the hub's main loop (one work item waits) so that what the sites send meanwhile
        meets in the same event drain; released on exit."""
        gate, entered = threading.Event(), threading.Event()

        def hold() -> None:
            entered.set()
            gate.wait(60)

        self.svc.post(hold)
        assert entered.wait(20), "the hub's main loop did not come round"
        try:
            yield
        finally:
            gate.set()

    def queued_events(self, site: str) -> list[bytes]:
        """Event payloads of ``site`` handed to the main loop and not yet drained."""
        with self.svc._events_lock:
            return list(self.svc._events.get(site, ()))

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.store_path)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def refusals(self, site: str) -> dict[str, int]:
        return {r.kind: r.count for r in self.svc.call(lambda: self.svc.store.site_refusals(site))}

    def alive(self) -> None:
        """The hub's thread runs, its main loop answers, and its store is intact."""
        assert self.hub.thread.is_alive()
        assert self.svc.call(lambda: 42, timeout=20) == 42
        assert self.sql("PRAGMA integrity_check") == [("ok",)]


def make_rig(county: County, platform: BookingPlatform, passwords: dict[str, str], broker: Any,
             stack: contextlib.ExitStack, cfg: Any = None) -> Rig:
    """Start the hub (with ``cfg``, default: the county's config) and log both sites in; the
    hub's member has a card."""
    hub = stack.enter_context(HubThread(county, cfg))
    svc = hub.service
    svc.call(lambda: svc.store.add_member(MEMBER, "Member One"))
    svc.call(lambda: svc.store.add_credential(MEMBER, CARD))
    clients = {s: stack.enter_context(TestClient(broker.host, broker.port, client_id=f"test-{s}", username=s,
                                                 password=passwords[s])) for s in (A, B)}
    for s, c in clients.items():
        for kind in (Kind.EVENT_ACK, Kind.CACHE, Kind.CACHE_DELTA):
            c.subscribe(topic(s, kind))
    rig = Rig(county, hub, platform, clients)
    assert svc.link.wait_connected(20)
    return rig
