"""The steady parts of the chaos run: the badge load on the sites' simulated readers, the
capture of every MQTT message (privacy scan, refusal codes, storage reports), and the
bad inputs a rogue client tries on the broker.

Nothing here decides whether the run passed; it counts, and testkit.chaos_check judges.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wire import envelope
from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind, parse, topic

from .chaos_data import Population
from .credscan import CredentialScanner
from .mqttclient import ConnectRefused, Message, TestClient
from .site import SiteFiles

log = logging.getLogger(__name__)

READERS = ("eingang-sim", "coworking-sim")
GARBAGE_LINES = (b"hello", b"em4100:XYZ", b"em4100:" + b"F" * 300, b"\xff\xfe\x00garbage", b"pin:", b"iso14443a:0",
                 b"wiegand26:" + b"0" * 200)


def present(path: Path, line: bytes) -> str:
    """Write one line into a reader FIFO without blocking; what happened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return "no_fifo"
    except OSError as exc:
        return "no_reader" if exc.errno == errno.ENXIO else f"open_{errno.errorcode.get(exc.errno or 0, 'error')}"
    try:
        os.write(fd, line + b"\n")
        return "ok"
    except BlockingIOError:
        return "busy"
    except OSError:
        return "write_error"
    finally:
        os.close(fd)


class BadgeLoad:
    """Presents credentials at every site's simulated readers at ``rate`` per second in
    total (a random site, reader and credential each time), plus ``garbage`` of the lines
    as bad input. ``boost(site, rate)`` adds load at one site (the disk-full window)."""

    def __init__(self, sites: dict[str, SiteFiles], pop: Population, rate: float, rng: random.Random,
                 garbage: float = 0.04) -> None:
        self.sites = sites
        self.pop = pop
        self.rate = rate
        self.rng = rng
        self.garbage = garbage
        self.stats: Counter[str] = Counter()
        self.categories: Counter[str] = Counter()
        self._boost: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="badge-load", daemon=True)
        self.started_at = 0.0
        self.stopped_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.stopped_at = time.monotonic()

    def boost(self, site: str, rate: float) -> None:
        if rate > 0:
            self._boost[site] = rate
        else:
            self._boost.pop(site, None)

    def _one(self, site: str) -> None:
        files = self.sites[site]
        reader = self.rng.choice(READERS)
        if self.rng.random() < self.garbage:
            line = self.rng.choice(GARBAGE_LINES)
            self.categories["garbage"] += 1
        else:
            cat, cred = self.pop.palettes[site].pick(self.rng)
            self.categories[cat] += 1
            line = cred.encode()
        outcome = present(files.sim_path(reader), line)
        self.stats[outcome] += 1
        if outcome == "ok" and line in GARBAGE_LINES:
            self.stats["garbage_ok"] += 1

    def _run(self) -> None:
        names = sorted(self.sites)
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._one(self.rng.choice(names))
            for site, rate in list(self._boost.items()):
                if self.rng.random() < rate * period:
                    self._one(site)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)  # pacing (the load generator), not synchronisation
            elif delay < -5:
                next_at = time.monotonic()  # fell far behind (machine overloaded): do not burst

    @property
    def presented(self) -> int:
        return self.stats["ok"] - self.stats["garbage_ok"]


@dataclass
class Capture:
    """Every message on the broker (a client subscribed to ``#`` as the hub user), scanned
    for credentials; refusal codes, storage reports and the first cache envelopes kept."""

    host: str
    port: int
    username: str
    password: str
    scanner: CredentialScanner
    kinds: Counter[str] = field(default_factory=Counter)
    cache_refusals: Counter[str] = field(default_factory=Counter)
    command_refusals: Counter[str] = field(default_factory=Counter)
    storage_reports: dict[str, list[tuple[float, str | None]]] = field(default_factory=lambda: defaultdict(list))
    #: Per site the last online status seen: (when, its storage_error).
    last_status: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    first_full: dict[str, bytes] = field(default_factory=dict)
    bytes_seen: int = 0

    def __post_init__(self) -> None:
        self._q: queue.Queue[Message | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="capture", daemon=True)
        self.client: TestClient | None = None

    def start(self) -> None:
        self.client = TestClient(self.host, self.port, client_id=f"chaos-capture-{uuid.uuid4().hex[:6]}",
                                 username=self.username, password=self.password)
        self.client.messages = self._q  # type: ignore[assignment]
        self.client.subscribe("#")
        self._worker.start()

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self._q.put(None)
        self._worker.join(30)

    def _work(self) -> None:
        while True:
            msg = self._q.get()
            if msg is None:
                return
            try:
                self._take(msg)
            except Exception:  # a capture bug must not stop the capture
                log.exception("capture: could not handle a message on %s", msg.topic)

    def _take(self, msg: Message) -> None:
        self.bytes_seen += len(msg.payload)
        self.scanner.scan_mqtt(msg.topic, msg.payload)
        try:
            t = parse(msg.topic)
        except WireError:
            self.kinds["other"] += 1
            return
        self.kinds[t.kind.value] += 1
        if t.kind is Kind.CACHE_ACK:
            with contextlib.suppress(WireError):
                ack = m.decode(msg.payload, m.CacheAck)
                if not ack.ok:
                    self.cache_refusals[ack.error or "?"] += 1
        elif t.kind is Kind.COMMAND_ACK:
            with contextlib.suppress(WireError):
                cack = m.decode(msg.payload, m.CommandAck)
                if not cack.ok:
                    self.command_refusals[cack.error or "?"] += 1
        elif t.kind is Kind.STATUS:
            with contextlib.suppress(WireError):
                st = m.decode(msg.payload, m.Status)
                if st.state == "online":
                    self.last_status[t.site] = (time.time(), st.storage_error)
                    reports = self.storage_reports[t.site]
                    if not reports or reports[-1][1] != st.storage_error:
                        reports.append((time.time(), st.storage_error))
        elif t.kind is Kind.CACHE and t.site not in self.first_full and msg.payload:
            self.first_full[t.site] = msg.payload


class Rogue:
    """Bad inputs on the broker, each counted by kind: forged, tampered, replayed
    (downgrade), wrong-site and oversized caches, garbage and forged commands (as a
    broker-side attacker holding the hub's broker login would), and malformed site
    messages (as a site's login would). None of them may change what any door does."""

    def __init__(self, host: str, port: int, users: dict[str, str], capture: Capture, rng: random.Random, *,
                 sites: list[str], oversize: int, oversize_sites: list[str] | None = None) -> None:
        self.host, self.port = host, port
        self.users = users
        self.capture = capture
        self.rng = rng
        self.sites = sites
        self.oversize = oversize
        #: Oversized envelopes go only here: receiving one leaves paho's allocations as a
        #: high-water mark (measured: +20-47 MiB for 9 MiB, bounded, reused by the next),
        #: which would hide or fake a trend in the memory of the sites whose memory is judged.
        self.oversize_sites = oversize_sites or sites
        self.tried: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._evil = Ed25519PrivateKey.generate()

    def _client(self, user: str) -> TestClient:
        return TestClient(self.host, self.port, client_id=f"rogue-{uuid.uuid4().hex[:6]}", username=user,
                          password=self.users[user], timeout=5)

    def _send(self, user: str, name: str, payload: bytes, what: str) -> None:
        try:
            c = self._client(user)
        except (ConnectRefused, TimeoutError, OSError):
            self.failed[what] += 1  # the broker is down right now (injected): try again later
            return
        try:
            c.publish(name, payload, timeout=5)
            self.tried[what] += 1
        except (TimeoutError, ConnectionError, ValueError, RuntimeError):
            self.failed[what] += 1
        finally:
            c.close()

    def one(self) -> None:
        """One bad input of a random kind at a random site."""
        site = self.rng.choice(self.sites)
        now = int(time.time())
        kind = self.rng.choice(["forged_cache", "tampered_cache", "downgrade_cache", "wrong_site_cache",
                                "garbage_cache", "oversized_cache", "forged_command", "garbage_command",
                                "garbage_event", "wrong_site_event", "garbage_status", "garbage_ack",
                                "garbage_door"])
        body_full = m.CacheFull(site=site, version=now + 10**9, issued_at=now, expires_at=now + 86400, entries=[])
        if kind == "forged_cache":
            self._send("hub", topic(site, Kind.CACHE), envelope.sign(body_full, self._evil), kind)
        elif kind == "tampered_cache":
            doc = json.loads(envelope.sign(body_full, self._evil))
            real = self.capture.first_full.get(site)
            if real is None:
                return
            good = json.loads(real)
            good["body"] = doc["body"]  # a body the hub never signed, under the hub's kid and signature
            self._send("hub", topic(site, Kind.CACHE), json.dumps(good).encode(), kind)
        elif kind == "downgrade_cache":
            real = self.capture.first_full.get(site)
            if real is not None:  # validly signed, but older than what the site holds
                self._send("hub", topic(site, Kind.CACHE), real, kind)
        elif kind == "wrong_site_cache":
            other = self.rng.choice([s for s in self.sites if s != site])
            real = self.capture.first_full.get(other)
            if real is not None:
                self._send("hub", topic(site, Kind.CACHE), real, kind)
        elif kind == "garbage_cache":
            self._send("hub", topic(site, self.rng.choice([Kind.CACHE, Kind.CACHE_DELTA])),
                       self.rng.choice([b"", b"{}", b"not json", os.urandom(200), b'{"alg":"Ed25519"}']), kind)
        elif kind == "oversized_cache":
            target = site if site in self.oversize_sites else self.rng.choice(self.oversize_sites)
            self._send("hub", topic(target, Kind.CACHE_DELTA), b"{" + b" " * self.oversize + b"}", kind)
        elif kind == "forged_command":
            cmd = m.Command(site=site, id=uuid.uuid4().hex, issued_at=now, expires_at=now + 60, action="unlock",
                            door="eingang", seconds=5)
            self._send("hub", topic(site, Kind.COMMAND), envelope.sign(cmd, self._evil), kind)
        elif kind == "garbage_command":
            self._send("hub", topic(site, Kind.COMMAND), gzip.compress(os.urandom(64)), kind)
        elif kind == "garbage_event":
            payload = self.rng.choice([b"{}", b"[]", b"\x00\x01", b'{"type":"access.granted","seq":"1"}',
                                       msgspec.json.encode({"type": "door.opened", "id": "x", "site": site,
                                                            "seq": -5, "boot": "b", "ts": 1.0,
                                                            "clock_synced": True, "door": "eingang"})])
            self._send(site, topic(site, Kind.EVENT), payload, kind)
        elif kind == "wrong_site_event":
            other = self.rng.choice([s for s in self.sites if s != site])
            ev = m.DoorOpened(id=uuid.uuid4().hex, site=other, seq=1, boot="rogue", ts=float(now),
                              clock_synced=True, door="eingang")
            self._send(site, topic(site, Kind.EVENT), m.encode(ev), kind)  # body names another site
        elif kind == "garbage_status":
            self._send(site, topic(site, Kind.STATUS), self.rng.choice([b"{}", b'{"state":"maybe"}', b"\xff"]),
                       kind)
        elif kind == "garbage_ack":
            self._send(site, topic(site, self.rng.choice([Kind.CACHE_ACK, Kind.COMMAND_ACK])),
                       self.rng.choice([b"{}", b'{"version":"x","ok":1}', b"null"]), kind)
        else:
            self._send(site, topic(site, Kind.DOOR, "eingang"), b'{"door":"keller","locked":false}', kind)

    def total(self) -> int:
        return sum(self.tried.values())
