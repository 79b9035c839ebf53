"""The rogue site of the chaos run (issue #10, items 6-10 and 15): a site login of its own
(``site-rogue``, provisioned in the county like any site, with no agent behind it) that
tries, at planned moments of the fault phase, each attack as its own fault kind:

- ``rogue_takeover_hub`` / ``rogue_takeover_site``: connecting with the hub's MQTT client
  id and with a real site's (item 6);
- ``rogue_share_hijack``: several connections subscribing ``$share/hub/<events>``,
  ``$share/hub/#`` and ``#`` (item 7);
- ``rogue_integers``: events, a status and cache acks of its own with seq / version
  2**63-1, 2**64 and -1 (item 8);
- ``rogue_payloads``: a 20 MB event and a 4 MB occupancy ``who`` list (item 9);
- ``rogue_foreign_checkins``: occupancy.checkin events naming other sites' bookings (item 10);
- ``rogue_unknown_event``: a ``door.exploded`` event with a garbage message in its own
  stream, then ordinary events (item 15).

The rogue keeps a small outbox of its own stream, as a site does, and resends what is
not acknowledged (``settle``). Nothing here judges; ``testkit.chaos_rogue_check`` does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.config import HubConfig
from wire.topics import Kind, shared, site_filter, topic

from .broker import Mosquitto
from .chaos_check import ro
from .chaos_data import Population, iso
from .chaos_db import is_pg
from .mqttclient import ConnectRefused, TestClient

ROGUE_SITE = "site-rogue"
BIG_EVENT_BYTES = 20 * 1024 * 1024
BIG_WHO_BYTES = 4 * 1024 * 1024
HUGE = (2**63 - 1, 2**64, -1)
ATTACKS = ("takeover", "share_hijack", "integers", "payloads", "foreign_checkins", "unknown_event")
_FAILURES = (ConnectRefused, TimeoutError, ConnectionError, OSError, ValueError, RuntimeError)


@dataclass
class RogueSite:
    """The attacker. ``hub_client_id`` and ``victim_client_id`` are whose MQTT client ids it
    takes; ``foreign_refs`` the other sites' booking refs it checks in to."""

    host: str
    port: int
    password: str
    hub_client_id: str
    victim: str
    victim_client_id: str
    foreign_refs: list[str]
    hub_db: Path | str  # the hub's SQLite file, or its PostgreSQL URL (testkit.chaos_db)
    rng: random.Random
    site: str = ROGUE_SITE
    counts: Counter[str] = field(default_factory=Counter)
    not_delivered: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    #: Its own stream: seq → the event's bytes; the hub's cumulative ack.
    outbox: dict[int, bytes] = field(default_factory=dict)
    acked: int = 0
    unknown_seq: int | None = None
    checkin_refs: list[str] = field(default_factory=list)
    #: Messages of other sites the hijacking subscriptions received; their SUBACK codes.
    share_foreign: int = 0
    share_subacks: Counter[str] = field(default_factory=Counter)
    #: The largest occupancy row the hub held for the rogue right after the 4 MB one.
    occupancy_row_max: int = 0

    def __post_init__(self) -> None:
        self.stream = uuid.uuid4().hex
        self.boot = uuid.uuid4().hex[:12]

    @classmethod
    def for_county(cls, broker: Mosquitto, password: str, cfg: HubConfig, pop: Population, *, victim: str,
                   among: list[str], seed: int) -> RogueSite:
        """The rogue of a chaos county: it takes the hub's client id and ``victim``'s, and
        checks in to the bookings of ``among`` that start tomorrow or later (which their own
        sites never check in to during the run)."""
        later = iso(dt.datetime.now(dt.UTC) + dt.timedelta(hours=24))
        refs = [b["id"] for s in among for b in pop.bookings[s] if b["start"] > later]
        return cls(broker.host, broker.port, password, hub_client_id=cfg.mqtt.client_id, victim=victim,
                   victim_client_id=f"torwart-site-{victim}", foreign_refs=refs,
                   hub_db=cfg.hub.store_url if is_pg(cfg.hub.store_url) else cfg.hub.store_path,
                   rng=random.Random(f"{seed}:rogue-site"))

    # --- plumbing ------------------------------------------------------------------------

    def _client(self, client_id: str | None = None, patience: float = 10.0) -> TestClient:
        """A connection with the rogue's login; while the broker is down (killed by a
        fault) it tries again for up to ``patience`` s."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return TestClient(self.host, self.port, client_id=client_id or f"rogue-site-{uuid.uuid4().hex[:6]}",
                                  username=self.site, password=self.password, timeout=5)
            except _FAILURES:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # pacing: the broker is restarting

    def _event(self, type_: str, seq: int, stream: str | None = None, **fields: Any) -> bytes:
        doc = {"id": uuid.uuid4().hex, "site": self.site, "stream": stream or self.stream, "seq": seq,
               "boot": self.boot, "ts": time.time(), "clock_synced": True, "type": type_, **fields}
        return json.dumps(doc).encode()

    def _publish(self, what: str, messages: list[tuple[Kind, bytes, bool]]) -> bool:
        """Publish (kind, payload, retain) under the rogue's own root in one connection;
        True when tried (connected: a broker refusing a message is an outcome, counted in
        ``refused``), False when the broker could not be reached."""
        try:
            c = self._client()
        except _FAILURES:
            self.not_delivered[what] += 1
            return False
        try:
            for kind, payload, retain in messages:
                c.publish(topic(self.site, kind), payload, retain=retain, timeout=30)
        except _FAILURES:
            self.refused[what] += 1
        finally:
            c.close()
        return True

    def _take_ack(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            doc = json.loads(payload)
            if doc.get("stream") in (None, self.stream):
                self.acked = max(self.acked, int(doc["upto"]))

    def emit(self, type_: str, **fields: Any) -> int:
        """One event of its own stream, kept until acknowledged; its seq."""
        seq = len(self.outbox) + 1
        self.outbox[seq] = self._event(type_, seq, **fields)
        self.deliver(wait=1.0)
        return seq

    def deliver(self, wait: float) -> bool:
        """Send every unacknowledged event of its stream and wait up to ``wait`` s for the
        ack of the last; True when everything is acknowledged."""
        try:
            c = self._client(patience=2.0)
        except _FAILURES:
            return False
        try:
            c.subscribe(topic(self.site, Kind.EVENT_ACK))
            for seq in sorted(s for s in self.outbox if s > self.acked):
                c.publish(topic(self.site, Kind.EVENT), self.outbox[seq], timeout=10)
            deadline = time.monotonic() + wait
            while self.acked < len(self.outbox) and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    self._take_ack(c.expect(timeout=max(0.05, deadline - time.monotonic())).payload)
        except _FAILURES:
            pass
        finally:
            c.close()
        return self.acked >= len(self.outbox)

    def settle(self, timeout: float) -> bool:
        """Resend until the hub acknowledged the whole stream (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not self.deliver(wait=3.0) and time.monotonic() < deadline:
            pass
        return self.acked >= len(self.outbox)

    # --- the attacks ---------------------------------------------------------------------

    def attack(self, name: str) -> None:
        getattr(self, f"_{name}")()

    def _takeover(self) -> None:
        """Log in with the hub's client id, then with a real site's, a moment each. An
        attempt counts once the broker is known to be up (a login with the rogue's own id
        got through); the broker refusing the borrowed id is an outcome (``refused``)."""
        for what, cid in (("rogue_takeover_hub", self.hub_client_id), ("rogue_takeover_site", self.victim_client_id)):
            for _ in range(2):
                try:
                    self._client().close()
                except _FAILURES:
                    self.not_delivered[what] += 1
                    continue
                self.counts[what] += 1
                try:
                    c = self._client(cid, patience=0)
                except _FAILURES:
                    self.refused[what] += 1
                    continue
                time.sleep(0.5)  # holding the id a moment (the attack), not synchronisation
                c.close()

    def _share_hijack(self, hold: float = 6.0) -> None:
        """Several connections in the hub's shared-subscription group and on ``#``."""
        filters = [shared(site_filter(Kind.EVENT)), shared("#"), "#", site_filter(Kind.EVENT)]
        clients: list[TestClient] = []
        try:
            for _ in range(3):
                try:
                    c = self._client()
                except _FAILURES:
                    self.not_delivered["rogue_share_hijack"] += 1
                    continue
                clients.append(c)
                for f in filters:
                    with contextlib.suppress(*_FAILURES):
                        for rc in c.subscribe(f):
                            self.share_subacks["refused" if rc.is_failure else "granted"] += 1
            if clients:
                self.counts["rogue_share_hijack"] += 1
            time.sleep(hold)  # subscribed for a while (the attack), not synchronisation
        finally:
            own = f"torwart/v1/site/{self.site}/"
            for c in clients:
                self.share_foreign += sum(1 for msg in c.drain() if not msg.topic.startswith(own))
                c.close()

    def _integers(self) -> None:
        now = time.time()
        msgs: list[tuple[Kind, bytes, bool]] = []
        for v in HUGE:
            msgs.append((Kind.EVENT, self._event("door.opened", v, stream=uuid.uuid4().hex, door="eingang"), False))
            msgs.append((Kind.CACHE_ACK, json.dumps({"version": v, "ok": v != -1, "error": None, "ts": now}).encode(),
                         False))
            status = {"state": "online", "ts": now, "boot": self.boot, "software": "rogue", "cache_version": v,
                      "cache_expires_at": v, "clock_synced": True, "outbox_pending": v, "lockdown": False,
                      "stream": self.stream, "storage_error": None}
            msgs.append((Kind.STATUS, json.dumps(status).encode(), True))
        sane = {"state": "online", "ts": now, "boot": self.boot, "software": "rogue", "cache_version": None,
                "cache_expires_at": None, "clock_synced": True, "outbox_pending": 0, "lockdown": False,
                "stream": self.stream, "storage_error": None}
        msgs.append((Kind.STATUS, json.dumps(sane).encode(), True))
        if self._publish("rogue_integers", msgs):
            self.counts["rogue_integers"] += 1

    def _payloads(self) -> None:
        pad = "A" * BIG_EVENT_BYTES
        big = self._event("door.opened", 2**40 + self.counts["rogue_payloads"], stream=uuid.uuid4().hex,
                          door="eingang", pad=pad)
        name = "m-" + "x" * 30
        who = [name] * (BIG_WHO_BYTES // (len(name) + 3))
        occ = json.dumps({"ts": time.time(), "rooms": {"coworking": {"present": len(who), "capacity": 8,
                                                                      "who": who}}}).encode()
        if not self._publish("rogue_payloads", [(Kind.EVENT, big, False), (Kind.OCCUPANCY, occ, True)]):
            return
        self.counts["rogue_payloads"] += 1
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # what the hub made of it (a read-only poll of its store)
            self.occupancy_row_max = max(self.occupancy_row_max, self._occupancy_row())
            time.sleep(0.5)
        small = json.dumps({"ts": time.time(), "rooms": {"coworking": {"present": 0, "capacity": 8, "who": []}}})
        self._publish("rogue_payloads", [(Kind.OCCUPANCY, small.encode(), True)])

    def _occupancy_row(self) -> int:
        try:
            with contextlib.closing(ro(self.hub_db)) as conn:
                row = conn.execute("SELECT length(payload) FROM occupancy WHERE site_id = ?", (self.site,)).fetchone()
        except Exception:  # the hub is being killed right now: next poll
            return 0
        return int(row[0] or 0) if row else 0

    def _foreign_checkins(self) -> None:
        refs = self.rng.sample(self.foreign_refs, min(3, len(self.foreign_refs)))
        for ref in refs:
            self.emit("occupancy.checkin", room="coworking", who="m-rogue", ref=ref, reason="badge")
            self.checkin_refs.append(ref)
        if refs:
            self.counts["rogue_foreign_checkins"] += 1

    def _unknown_event(self) -> None:
        seq = self.emit("door.exploded", message={"\u0000": ["\ufffd" * 50, None, 1e308, {"x": [[[]]]}]},
                        door="?!")
        self.unknown_seq = self.unknown_seq or seq
        for _ in range(3):
            self.emit("door.opened", door="eingang")
        self.counts["rogue_unknown_event"] += 1

    def report(self) -> dict[str, Any]:
        return {"site": self.site, "stream": self.stream, "emitted": len(self.outbox), "acked": self.acked,
                "unknown_seq": self.unknown_seq, "checkin_refs": list(self.checkin_refs), "victim": self.victim,
                "hub_client_id": self.hub_client_id, "share_foreign_messages": self.share_foreign,
                "share_subacks": dict(self.share_subacks), "occupancy_row_max": self.occupancy_row_max,
                "tried": dict(self.counts), "not_delivered": dict(self.not_delivered),
                "refused_by_broker": dict(self.refused)}
