"""Hub benchmark (issue: hub).

    scripts/bench_hub [--sites 20 --events 5000] [--county-sites 200 --bookings 100000]

1. Ingest: events stored durably and acknowledged per second by the hub, beside a bare
   paho subscriber that only counts the same messages, same broker, same publisher, same
   run. The ratio is what the hub's validation, SQLite commits and acks cost.
2. County: --bookings bookings across --county-sites sites, paged from the booking
   platform fake, to every site's cache built, signed and published (retained).
3. Delta: bytes of a signed delta for one changed booking vs the signed full cache of a
   1,000-entry site.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from testkit.booking_fake import BookingPlatform, iso
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.ingest_bench import acked_seconds, bare_rate, client, make_events, publish_all
from testkit.report import report
from testkit.util import wait_for


def bench_hub_ingest(tmp: Path, broker: Mosquitto, platform: BookingPlatform, sites: int, per_site: int,
                     payloads: list[tuple[str, bytes]]) -> dict[str, Any]:
    ids = tuple(f"h{s:03d}" for s in range(sites))
    county = make_county(tmp / "ingest", broker, platform, ids)
    with HubThread(county) as hub:
        wait_for(lambda: hub.service.link.connected, 20, what="hub connected")
        elapsed, ok = acked_seconds(broker, lambda: publish_all(broker, payloads), dict.fromkeys(ids, per_site))
        stats = hub.service.ingest.stats
        return {"events": len(payloads), "seconds": elapsed, "per_second": len(payloads) / elapsed,
                "complete": ok, "batches": stats.batches, "stored": stats.events_new}


def bench_county(tmp: Path, broker: Mosquitto, n_sites: int, n_bookings: int) -> dict[str, Any]:
    platform = BookingPlatform(page_size=1000).start()
    try:
        ids = tuple(f"s{s:03d}" for s in range(n_sites))
        county = make_county(tmp / "county", broker, platform, ids)
        members = n_bookings // 5
        now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        for i in range(n_bookings):
            start = now + dt.timedelta(hours=(i % 150) - 12)
            platform.put({"id": f"bk-{i}", "resource_id": county.resource(ids[i % n_sites]),
                          "member_id": f"m-{i % members}", "start": iso(start),
                          "end": iso(start + dt.timedelta(hours=2)), "status": "confirmed", "pin": None})
        from hub import config as hub_config
        from hub.store import open_store

        cfg = hub_config.load(county.hub_config_path)
        cfg.hub.data_path.mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.hub.store_url)
        store.add_members((f"m-{i}", f"Member {i}", None) for i in range(members))
        store.import_credentials((f"m-{i}", f"em4100:{i:010X}") for i in range(members))
        store.close()
        retained = set()
        seen = threading.Event()

        wanted = set(ids)

        def on_cache(c: Any, u: Any, msg: Any) -> None:
            site = msg.topic.split("/")[3]
            if site in wanted:
                retained.add(site)
            if len(retained) == n_sites:
                seen.set()

        with HubThread(county) as hub:
            svc = hub.service
            wait_for(lambda: svc.link.connected, 20, what="hub connected")
            watcher = client(broker, "bench-cache")
            watcher.on_message = on_cache
            fulls_before = svc.hub.publisher.fulls
            t0 = time.perf_counter()
            report = svc.call(svc.sync_now, timeout=600)
            t_sync_and_publish = time.perf_counter() - t0
            watcher.subscribe("torwart/v1/site/+/cache", qos=1)  # every retained cache, once published
            seen.wait(120)
            entries = sum(svc.call(lambda: [svc.store.cache_state(s).n_entries for s in ids]))  # type: ignore[union-attr]
            watcher.disconnect()
            watcher.loop_stop()
            return {"sites": n_sites, "bookings": n_bookings, "pages": report.pages, "ok": report.ok,
                    "seconds_sync_to_published": t_sync_and_publish,
                    "caches_published": svc.hub.publisher.fulls - fulls_before,
                    "retained_seen": len(retained), "entries": entries}
    finally:
        platform.stop()


def bench_delta(tmp: Path, broker: Mosquitto) -> dict[str, Any]:
    platform = BookingPlatform(page_size=1000).start()
    try:
        county = make_county(tmp / "delta", broker, platform, ("big",))
        now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        for i in range(1000):
            start = now + dt.timedelta(hours=i % 100)
            platform.put({"id": f"bk-{i}", "resource_id": county.resource("big"), "member_id": f"m-{i}",
                          "start": iso(start), "end": iso(start + dt.timedelta(hours=1)), "status": "confirmed"})
        from hub import config as hub_config
        from hub.caches import CacheManager
        from hub.config import signing_key
        from hub.store import open_store
        from hub.sync import BookingSync

        cfg = hub_config.load(county.hub_config_path)
        cfg.hub.data_path.mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.hub.store_url)
        store.add_members((f"m-{i}", f"Member {i}", None) for i in range(1000))
        store.import_credentials((f"m-{i}", f"em4100:{i:010X}") for i in range(1000))
        caches = CacheManager(store, cfg, signing_key(cfg))
        sync = BookingSync(cfg, store)
        t = int(time.time())
        assert sync.run_once(t).ok
        v1 = caches.rebuild("big", t)
        assert v1 is not None
        full_body = caches.full_body("big")
        full = caches.signed(full_body)
        b = platform.bookings["bk-500"]
        platform.put({**b, "end": iso(dt.datetime.fromisoformat(b["end"]) + dt.timedelta(minutes=30))})
        assert sync.run_once(t + 1).ok
        v2 = caches.rebuild("big", t + 1)
        assert v2 is not None
        delta_body = caches.delta_body("big", v1)
        assert delta_body is not None and len(delta_body.upsert) == 1
        delta = caches.signed(delta_body)
        sync.close()
        store.close()
        return {"full_entries": len(full_body.entries), "full_bytes": len(full),
                "delta_bytes": len(delta), "ratio": len(delta) / len(full)}
    finally:
        platform.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--events", type=int, default=5000, help="events per site")
    ap.add_argument("--county-sites", type=int, default=200)
    ap.add_argument("--bookings", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench-results/bench_hub.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("hub.link").setLevel(logging.ERROR)  # the hub's reconnect notes between rounds
    tmp = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
    try:
        with Mosquitto(tmp / "broker") as broker, BookingPlatform() as platform:
            bare, hub = [], []
            for r in range(args.rounds):
                print(f"ingest round {r + 1}: {args.sites} sites x {args.events} events ...", flush=True)
                events = make_events(f"b{r}x", args.sites, args.events)
                bare.append(bare_rate(broker, functools.partial(publish_all, broker, events), len(events)))
                res = bench_hub_ingest(tmp / f"r{r}", broker, platform, args.sites, args.events,
                                       make_events("h", args.sites, args.events))
                hub.append(res["per_second"])
                results.setdefault("ingest_rounds", []).append({"bare_per_s": bare[-1], **res})
            results["ingest"] = {"bare_per_s": statistics.median(bare), "hub_per_s": statistics.median(hub),
                                 "ratio": statistics.median(h / b for h, b in zip(hub, bare, strict=True))}
            print(f"county: {args.bookings} bookings across {args.county_sites} sites ...", flush=True)
            results["county"] = bench_county(tmp, broker, args.county_sites, args.bookings)
            print("delta vs full ...", flush=True)
            results["delta"] = bench_delta(tmp, broker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ing, cty, dl = results["ingest"], results["county"], results["delta"]
    rows = [
        ("bare paho subscriber, events/s", f"{ing['bare_per_s']:,.0f}", "same broker, publisher and run"),
        ("hub: stored durably + acked, events/s", f"{ing['hub_per_s']:,.0f}",
         f"ratio {ing['ratio']:.2f} (goal >= 0.5)"),
        (f"{cty['bookings']:,} bookings / {cty['sites']} sites: paged → caches published",
         f"{cty['seconds_sync_to_published']:.1f} s",
         f"goal < 30 s ({cty['pages']} pages, {cty['entries']:,} entries, "
         f"{cty['caches_published']} caches published, {cty['retained_seen']} retained seen)"),
        (f"delta for one changed booking vs full ({dl['full_entries']} entries)",
         f"{dl['delta_bytes']:,} B", f"full {dl['full_bytes']:,} B, ratio {dl['ratio']:.4f}"),
    ]
    report(rows, results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
