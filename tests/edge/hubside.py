"""The hub's side of the wire, for edge tests: signs caches and commands with a test key,
publishes them, and collects what the site sends (acks, events, status, doors)."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import config as edge_config
from edge.agent import Agent
from edge.clock import FakeClock
from testkit.broker import Mosquitto
from testkit.mqttclient import TestClient
from testkit.site import Endpoint, SiteFiles, write_site
from wire import envelope
from wire import messages as m
from wire.creds import cred_hash
from wire.topics import Kind, parse, site_filter, topic


def entry(site_key: bytes, credential: str, doors: list[str], *, id: str | None = None, ref: str | None = "b1",
          start: int | None = None, end: int | None = None, who: str = "u-1", room: str | None = None) -> m.Entry:
    return m.Entry(id=id or f"{ref}:{credential}", cred=cred_hash(site_key, credential), doors=doors, from_=start,
                   until=end, who=who, ref=ref, room=room)


class HubSide:
    def __init__(self, broker: Mosquitto, key: Ed25519PrivateKey, site: str, *, auto_ack: bool = False,
                 now: Callable[[], float] = time.time) -> None:
        # Sign with the site's clock when the site runs on a frozen FakeClock: a body signed by
        # the wall clock a second boundary later would be "from the future" to the site, and the
        # site would rightly distrust its clock (clock_untrusted) -- a race, not a product defect.
        self.now = now
        self.key = key
        self.auto_ack = auto_ack
        self.seqs: set[int] = set()
        self.duplicates = 0
        self.contiguous = 0
        self.site = site
        self.client = TestClient(broker.host, broker.port, client_id=f"hubside-{uuid.uuid4().hex[:6]}")
        self.inbox: dict[Kind, queue.Queue[bytes]] = {k: queue.Queue() for k in Kind}
        self.events: list[m.Event] = []
        self._lock = threading.Lock()
        self.client.c.on_message = self._on_message
        for kind in (Kind.STATUS, Kind.EVENT, Kind.CACHE_ACK, Kind.COMMAND_ACK, Kind.OCCUPANCY, Kind.DOOR):
            self.client.subscribe(site_filter(kind, site))
        self.version = 0

    def _on_message(self, c: Any, ud: Any, msg: Any) -> None:
        t = parse(msg.topic)
        payload = bytes(msg.payload)
        if t.kind is Kind.EVENT:
            ev = m.decode(payload, m.AnyEvent)
            with self._lock:
                if ev.seq in self.seqs:
                    self.duplicates += 1
                else:
                    self.seqs.add(ev.seq)
                    self.events.append(ev)
                while self.contiguous + 1 in self.seqs:
                    self.contiguous += 1
                upto = self.contiguous
            if self.auto_ack:  # as the hub does: ack what is stored without a gap
                c.publish(topic(self.site, Kind.EVENT_ACK), m.encode(m.EventAck(upto=upto)), qos=1)
        self.inbox[t.kind].put(payload)

    def close(self) -> None:
        self.client.close()

    # --- hub → site -----------------------------------------------------------------------------

    def body_full(self, entries: list[m.Entry], *, version: int | None = None, site: str | None = None,
                  expires_in: int = 86400) -> m.CacheFull:
        if version is None:
            self.version += 1
            version = self.version
        now = int(self.now())
        return m.CacheFull(site=site or self.site, version=version, issued_at=now, expires_at=now + expires_in,
                           entries=entries)

    def body_delta(self, base: int, version: int, upsert: list[m.Entry], remove: list[str]) -> m.CacheDelta:
        now = int(self.now())
        return m.CacheDelta(site=self.site, version=version, base_version=base, issued_at=now,
                            expires_at=now + 86400, upsert=upsert, remove=remove)

    def command(self, action: str, *, id: str | None = None, expires_in: int = 60, **kw: Any) -> m.Command:
        now = int(self.now())
        return m.Command(site=self.site, id=id or uuid.uuid4().hex, issued_at=now, expires_at=now + expires_in,
                         action=action, **kw)  # type: ignore[arg-type]

    def send(self, kind: Kind, body: m.Body | bytes, *, key: Ed25519PrivateKey | None = None,
             raw: bytes | None = None, retain: bool = False) -> None:
        payload = raw if raw is not None else envelope.sign(body, key or self.key)
        self.client.publish(topic(self.site, kind), payload, retain=retain)

    # --- site → hub -----------------------------------------------------------------------------

    def next(self, kind: Kind, timeout: float = 10.0) -> bytes:
        return self.inbox[kind].get(timeout=timeout)

    def cache_ack(self, timeout: float = 15.0) -> m.CacheAck:
        ack: m.CacheAck = m.decode(self.next(Kind.CACHE_ACK, timeout), m.CacheAck)
        return ack

    def command_ack(self, timeout: float = 10.0) -> m.CommandAck:
        ack: m.CommandAck = m.decode(self.next(Kind.COMMAND_ACK, timeout), m.CommandAck)
        return ack

    def wait_event(self, pred: Callable[[m.Event], bool], timeout: float = 10.0) -> m.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for ev in self.events:
                    if pred(ev):
                        return ev
            time.sleep(0.01)
        raise TimeoutError("no matching event")

    def wait_online(self, timeout: float = 15.0, *, not_boot: str | None = None) -> m.Status:
        """The next online status (of a boot other than ``not_boot``: a restarted agent)."""
        deadline = time.monotonic() + timeout
        while True:
            st: m.Status = m.decode(self.next(Kind.STATUS, max(0.1, deadline - time.monotonic())), m.Status)
            if st.state == "online" and st.boot != not_boot:
                return st

    def ack_events(self, upto: int) -> None:
        self.client.publish(topic(self.site, Kind.EVENT_ACK), m.encode(m.EventAck(upto=upto)))


@contextmanager
def site_with_hub(dir: Path, broker: Mosquitto, *, via: Endpoint | None = None, site_id: str = "minheim",
                  **site_kw: Any) -> Iterator[tuple[SiteFiles, HubSide]]:
    """A site written to ``dir`` (reaching the broker ``via`` a proxy, if given) and the hub
    side of the test on ``broker`` itself, with a fresh hub key; the hub side is closed after."""
    key = Ed25519PrivateKey.generate()
    site = write_site(dir, site_id, via if via is not None else broker, key, **site_kw)
    hub = HubSide(broker, key, site.site)
    try:
        yield site, hub
    finally:
        hub.close()


@contextmanager
def agent_in_thread(site: SiteFiles, **kw: Any) -> Iterator[Agent]:
    """Run the real agent of ``site`` on a thread of this process (pins: the mock factory)."""
    agent = Agent(edge_config.load(site.config_path), **kw)
    t = threading.Thread(target=agent.run, name="agent", daemon=True)
    t.start()
    try:
        yield agent
    finally:
        agent.stop()
        t.join(15)
        assert not t.is_alive(), "agent did not stop"


def last_seq(hub: HubSide) -> int:
    """The highest seq among the events the hub side has received; 0 before the first."""
    return max((e.seq for e in hub.events), default=0)


def access(hub: HubSide, after: int, timeout: float = 10.0) -> m.Event:
    """The first access event (granted or denied) after seq ``after``."""
    return hub.wait_event(lambda e: e.seq > after and e.type.startswith("access."), timeout)


@contextmanager
def site_on_fake_clock(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey
                       ) -> Iterator[tuple[SiteFiles, HubSide, Agent, FakeClock]]:
    """Minheim (clock_trust = "ntp") with its agent running on a thread, on a FakeClock
    that stands at the current time and is NTP-synchronised, and online at the test's
    HubSide, which signs by that clock."""
    clock = FakeClock(time.time(), synchronized=True)
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key, policy={"clock_trust": "ntp"})
    hub = HubSide(broker, hub_key, site.site, now=clock.time)
    try:
        with agent_in_thread(site, clock=clock) as agent:
            hub.wait_online()
            yield site, hub, agent, clock
    finally:
        hub.close()


def read_cache(site: SiteFiles) -> tuple[int | None, int]:
    from edge.cache import CacheStore

    with CacheStore(site.data_dir / "cache.db", read_only=True) as c:
        meta = c.meta()
    return meta.version, meta.entry_count


__all__ = ["HubSide", "Path", "access", "agent_in_thread", "entry", "last_seq", "read_cache", "site_on_fake_clock"]
