"""Ingest measured two ways on the same broker, publisher and run (scripts/bench_hub,
scripts/bench_scale): a bare paho subscriber that only counts the events, and the hub,
timed until it has acknowledged (stored durably) every one of them. Their ratio is what
the hub's validation, commits and acks cost.

``publish`` is whatever puts the events on the broker: one QoS 1 publisher
(``publish_all``, bench_hub) or the simulated sites themselves (bench_scale).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from wire import messages as m
from wire.topics import Kind, site_filter, topic

from .broker import Mosquitto


@dataclass(frozen=True)
class Login:
    """Where a measuring client connects: the broker's hub listener, with the hub's login
    when the broker has logins."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def hub(cls, broker: Mosquitto, password: str | None = None, username: str = "hub") -> Login:
        return cls(broker.host, broker.hub_port, username if password is not None else None, password)


def client(login: Login | Mosquitto, name: str) -> mqtt.Client:
    """A connected paho client on its own network thread (``loop_start``)."""
    lg = login if isinstance(login, Login) else Login.hub(login)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    if lg.username is not None:
        c.username_pw_set(lg.username, lg.password)
    c.connect(lg.host, lg.port)
    c.loop_start()
    return c


def subscribed(c: mqtt.Client, filter_: str, timeout: float = 30.0) -> None:
    """Subscribe ``c`` to ``filter_`` at QoS 1 and wait for the broker's SUBACK."""
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe(filter_, qos=1)
    if not done.wait(timeout):
        raise TimeoutError(f"no SUBACK for {filter_} within {timeout:.0f} s")


def publish_all(login: Login | Mosquitto, payloads: list[tuple[str, bytes]]) -> None:
    """One publisher for both measurements: QoS 1, as sites publish."""
    c = client(login, "bench-pub")
    try:
        # Message ids are 16 bits: keep well under 65,535 unacknowledged publishes.
        window: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        for t, p in payloads:
            if len(window) >= 20_000:
                window.popleft().wait_for_publish(60)
            window.append(c.publish(t, p, qos=1))
        for info in window:
            info.wait_for_publish(60)
    finally:
        c.disconnect()
        c.loop_stop()


def make_events(prefix: str, sites: int, per_site: int) -> list[tuple[str, bytes]]:
    """``per_site`` access.denied events (legacy stream, seq 1...) of sites ``{prefix}000``...,
    interleaved across the sites, as (topic, payload)."""
    out = []
    for seq in range(1, per_site + 1):
        for s in range(sites):
            site = f"{prefix}{s:03d}"
            ev = m.AccessDenied(id=uuid.uuid4().hex, site=site, seq=seq, boot="bench", ts=1_800_000_000.0 + seq,
                                clock_synced=True, door="eingang", cred="0" * 32, reason="unknown_credential")
            out.append((topic(site, Kind.EVENT), m.encode(ev)))
    return out


def bare_rate(login: Login | Mosquitto, publish: Callable[[], Any], expected: int, *, timeout: float = 300) -> float:
    """Events per second a bare paho subscriber on every site's ``event`` topic counts
    while ``publish()`` puts ``expected`` events on the broker (from the start of
    ``publish`` to the last one counted)."""
    done = threading.Event()
    count = [0]

    def on_message(c: Any, u: Any, msg: Any) -> None:
        count[0] += 1
        if count[0] >= expected:
            done.set()

    sub = client(login, "bench-bare")
    sub.on_message = on_message
    try:
        subscribed(sub, site_filter(Kind.EVENT))
        t0 = time.perf_counter()
        publish()
        if not done.wait(timeout):
            raise TimeoutError(f"the bare subscriber counted {count[0]} of {expected} events in {timeout:.0f} s")
        return expected / (time.perf_counter() - t0)
    finally:
        sub.disconnect()
        sub.loop_stop()


def acked_seconds(login: Login | Mosquitto, publish: Callable[[], Any], targets: Mapping[str, int], *,
                  timeout: float = 600) -> tuple[float, bool]:
    """Seconds from the start of ``publish()`` until the hub's ``event/ack`` of every site
    in ``targets`` reached its target seq (site → seq), and whether it did within ``timeout``."""
    acked: dict[str, int] = {}
    done = threading.Event()
    lock = threading.Lock()

    def on_ack(c: Any, u: Any, msg: Any) -> None:
        site = msg.topic.split("/")[3]
        if site not in targets:
            return
        with lock:
            acked[site] = max(acked.get(site, 0), m.decode(msg.payload, m.EventAck).upto)
            if len(acked) == len(targets) and all(acked[s] >= t for s, t in targets.items()):
                done.set()

    watcher = client(login, "bench-acks")
    watcher.on_message = on_ack
    try:
        subscribed(watcher, site_filter(Kind.EVENT_ACK))
        t0 = time.perf_counter()
        publish()
        ok = done.wait(timeout)
        return time.perf_counter() - t0, ok
    finally:
        watcher.disconnect()
        watcher.loop_stop()
