"""Retention (GDPR storage limitation), with controlled timestamps: at the site the agent's
housekeeping deletes acknowledged events older than ``retention_days`` by its clock, and
nothing newer, and nothing unacknowledged; at the hub the retention job deletes events
received, and bookings ended, before ``retention_days`` ago, and nothing newer. The
boundary itself is kept on both sides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.clock import FakeClock
from edge.outbox import Outbox
from hub import config as hub_config
from hub.service import HubService
from hub.store import open_store
from testkit.broker import Mosquitto
from testkit.site import write_site
from testkit.util import wait_for
from tests.edge.hubside import HubSide, agent_in_thread
from tests.hub.test_hub_config import write_hub_config
from tests.hub.test_store_contract import SITES, Bk, events

DAY = 86400


def acked_upto(path: Path) -> int:
    with Outbox(path, "minheim", "t", read_only=True) as ob:
        return ob.acked_upto


def outbox_rows(path: Path, site: str) -> list[tuple[int, float]]:
    with Outbox(path, site, "t", read_only=True) as ob:
        return sorted((e["seq"], e["ts"]) for e in ob.recent(10_000))


def test_the_site_deletes_acknowledged_events_past_retention_and_nothing_newer(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "minheim", "minheim", broker, key, policy={"retention_days": 30})
    t0 = time.time()
    clock = FakeClock(t0 - 40 * DAY)  # the agent starts 40 days ago
    hub = HubSide(broker, key, site.site, auto_ack=True)
    try:
        with agent_in_thread(site, clock=clock) as agent:
            hub.wait_online()
            ages = [40, 31, 30, 29, 1]  # days before t0 at which a stranger badges
            for age in ages:
                clock.set(t0 - age * DAY)
                n = len(hub.events)
                site.badge("eingang-sim", "em4100:0A00B1C2FF")
                hub.wait_event(lambda e, n=n: e.type == "access.denied" and len(hub.events) > n)
            wait_for(lambda: hub.contiguous == max(e.seq for e in hub.events), 10, what="every event acked")
            last = max(e.seq for e in hub.events)
            db = site.data_dir / "outbox.db"
            wait_for(lambda: acked_upto(db) == last, 10, what="the acks recorded at the site")
            clock.set(t0)
            agent.post(agent._housekeeping)
            cutoff = t0 - 30 * DAY
            wait_for(lambda: all(ts >= cutoff for _, ts in outbox_rows(db, "minheim")), 10,
                     what="housekeeping done")
            kept = outbox_rows(db, "minheim")
            assert kept  # the newer ones are all there
            ts_kept = [ts for _, ts in kept]
            for age in (30, 29, 1):  # the boundary (exactly 30 days) and newer
                assert t0 - age * DAY in ts_kept
            for age in (40, 31):
                assert t0 - age * DAY not in ts_kept
    finally:
        hub.close()


def test_the_site_never_deletes_an_unacknowledged_event(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    with Outbox(tmp_path / "o.db", "minheim", "b") as ob:
        for age in (100, 90, 10):
            ob.emit("door.opened", ts=t0 - age * DAY, clock_synced=True, door="eingang")
        ob.ack(1)
        assert ob.purge(t0, 30) == 1  # seq 1 only: seq 2 is as old but the hub has not got it
        assert [e["seq"] for e in ob.recent()] == [3, 2]


def test_the_hub_deletes_events_and_bookings_past_retention_and_nothing_newer(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path, extra="")
    text = path.read_text().replace('signing_key_file = "keys/signing.key"',
                                    'signing_key_file = "keys/signing.key"\nretention_days = 90')
    path.write_text(text)
    cfg = hub_config.load(path)
    now = time.time()
    cutoff = now - 90 * DAY
    store = open_store(cfg.hub.store_url)
    try:
        store.sync_sites(SITES)
        for seq, received in enumerate([cutoff - 3600, cutoff - 1, cutoff + 60, now - DAY, now], start=1):
            store.store_events("minheim", events([seq]), received_at=received)
        ended = {"old": int(cutoff) - 7200, "edge": int(cutoff) + 30, "recent": int(now) - DAY,
                 "future": int(now) + DAY}
        store.upsert_bookings([Bk(f"bk-{k}", "res-a", "m1", end - 3600, end) for k, end in ended.items()])
        svc = HubService(cfg)
        svc.store = store  # the retention job alone, on this store
        svc._retention()
        assert sorted(e.seq for e in store.events(site_id="minheim", limit=100)) == [3, 4, 5]
        assert {k for k in ended if store.get_booking(f"bk-{k}") is not None} == {"edge", "recent", "future"}
        # Purged events stay counted: a site resending them does not get them stored again.
        r = store.store_events("minheim", events([1, 2, 6]), received_at=now)
        assert (r.new, r.acked_upto) == (1, 6)
    finally:
        store.close()
