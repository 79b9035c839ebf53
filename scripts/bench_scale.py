"""Scale benchmark (issue #15): a state's worth of sites as lightweight simulated clients
(testkit.scale_sites, not agents) against the real hub, on one broker.

    scripts/bench_scale [--sites 2000 --bookings 1000000] [--events 10] [--nodes 1,2,3]
                        [--store sqlite|postgres|postgresql://...]

One round per node count in ``--nodes``, each from scratch (its own broker, store, booking
platform fake and simulated sites), the rounds' figures side by side:

1. Ingest: every site publishes --events events on its own connection; a bare paho
   subscriber counts them (before any hub runs), then the hub's N nodes store and
   acknowledge the same number (testkit.ingest_bench, as scripts/bench_hub).
2. Memory: each node's RSS with no site connected and with every site connected and
   holding its first cache; the difference per site.
3. Sync (the leader's job): --bookings bookings appear at the booking platform; from the
   hub's first page request of the next sync until every site verified and applied the
   version holding its bookings (checked against the hub's store). Then one booking
   cancelled at up to 100 sites: the same, by deltas.
4. Reconnect storm: the broker restarted (clean stop, persistence kept) with every site
   connected; until every site and hub node is connected again and the hub acknowledges
   events again; the full caches the sites received meanwhile, split into those the hub
   published and those the broker handed out again as retained (a new subscription).

The nodes are ``python -m hub run --node nK --listen ...`` on one configuration with the
shared event subscription (testkit.hub_nodes). ``--store postgres`` starts a temporary
PostgreSQL (Debian's packages, testkit.postgres, a free port) with a fresh database per
round; ``--store URL`` uses an empty store of your own (one node count only).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from testkit.booking_fake import BookingPlatform
from testkit.hub_nodes import HubNodes, rss_bytes
from testkit.ingest_bench import acked_seconds, bare_rate
from testkit.postgres import Postgres, fresh_store_url
from testkit.report import report
from testkit.scale_county import (
    ScaleCounty,
    expected_entries,
    hub_views,
    latest_versions,
    make_bookings,
    make_scale_county,
    seed_members,
    store_url,
)
from testkit.scale_fleet import Fleet
from testkit.scale_report import parse_nodes, rows, store_choice
from testkit.scale_sites import SiteReport, raise_fd_limit
from testkit.util import wait_for


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _sum(reps: list[SiteReport], field: str) -> int:
    return sum(getattr(r, field) for r in reps)


def ingest_bare(sc: ScaleCounty, per_process: int, events: int) -> dict[str, Any]:
    """The bare subscriber's rate, with the sites publishing and no hub subscribed yet."""
    with Fleet(sc.sim_config(), sc.logins(), per_process=per_process) as fleet:
        fleet.wait(lambda reps: all(r.connected for r in reps), 300, what="every site connected")
        n = len(sc.sites) * events
        rate = bare_rate(sc.hub_login, functools.partial(fleet.badge, events), n)
    return {"events": n, "bare_per_s": rate}


def first_caches(fleet: Fleet, url: str, sc: ScaleCounty, timeout: float) -> float:
    t0 = time.time()
    latest = latest_versions(url, sc.sites)
    reps = fleet.wait(lambda reps: all(r.version == latest[r.site] for r in reps), timeout,
                      what="every site holding its first cache")
    return max(r.applied_at for r in reps) - t0


def ingest_hub(fleet: Fleet, sc: ScaleCounty, events: int) -> dict[str, Any]:
    targets = {r.site: r.seq + events for r in fleet.snapshot()}
    seconds, ok = acked_seconds(sc.hub_login, functools.partial(fleet.badge, events), targets)
    n = len(sc.sites) * events
    return {"events": n, "seconds": seconds, "hub_per_s": n / seconds, "complete": ok}


def sync_phase(fleet: Fleet, platform: BookingPlatform, url: str, sc: ScaleCounty, bookings: list[dict[str, Any]],
               want: dict[str, int], timeout: float, *, touch: bool) -> dict[str, Any]:
    """Load ``bookings`` at the platform (``touch``: changed now, else at their
    ``updated_at``); until every site holds ``want`` entries."""
    before = fleet.snapshot()
    t_load = time.time()
    platform.load(bookings, touch=touch)
    reps = fleet.wait(lambda reps: all(r.entries == want[r.site] for r in reps), timeout,
                      what="every site holding its bookings", interval=0.5)
    # Settled: the hub has taken every site's ack (the next round starts from what it knows).
    wait_for(lambda: hub_views(url, sc.sites) == {r.site: r.version for r in reps}, timeout, interval=0.5,
             what="the hub recording every site's version")
    calls = [c for c in platform.listing_calls() if c.at >= t_load]
    t0 = calls[0].at
    # The sync's pages: up to the next listing that starts over (no page token).
    pages = [calls[0], *itertools.takewhile(lambda c: "page_token" in c.query, calls[1:])]
    latest = latest_versions(url, sc.sites)
    return {
        "bookings": len(bookings), "seconds_to_first_page": t0 - t_load,
        "seconds_paging": pages[-1].at - t0, "pages_read": len(pages),
        "seconds_to_last_received": max(r.received_at for r in reps) - t0,
        "seconds_to_all_applied": max(r.applied_at for r in reps) - t0,
        "all_at_latest": all(r.version == latest[r.site] for r in reps),
        "fulls": _sum(reps, "fulls") - _sum(before, "fulls"), "deltas": _sum(reps, "deltas") - _sum(before, "deltas"),
        "refused": _sum(reps, "verified") - _sum(before, "verified")
        - (_sum(reps, "applied_fulls") + _sum(reps, "applied_deltas")
           - _sum(before, "applied_fulls") - _sum(before, "applied_deltas")),
    }


def storm(fleet: Fleet, nodes: HubNodes, url: str, sc: ScaleCounty, timeout: float) -> dict[str, Any]:
    before = {r.site: r for r in fleet.snapshot()}
    latest = latest_versions(url, sc.sites)
    at_latest = {s for s, r in before.items() if r.version == latest[s]}
    t0 = time.time()
    sc.broker.restart()
    t_broker = time.time() - t0
    hub_back: list[float] = []

    def back(reps: list[SiteReport]) -> bool:
        if not hub_back and nodes.all_connected():
            hub_back.append(time.time() - t0)
        return bool(hub_back) and all(r.connected and r.connected_at > t0 and r.version == latest[r.site]
                                      for r in reps)

    reps = fleet.wait(back, timeout, what="every site and hub node connected again", interval=0.5)
    t_sites = max(r.connected_at for r in reps) - t0
    # The hub takes events again: one per site, acknowledged.
    targets = {r.site: r.seq + 1 for r in reps}
    t1 = time.time()
    ack_s, ok = acked_seconds(sc.hub_login, functools.partial(fleet.badge, 1), targets, timeout=timeout)
    after = fleet.wait(lambda reps: all(r.acked >= targets[r.site] for r in reps), timeout, what="acks after")
    hub_fulls = {r.site: (r.fulls - r.fulls_retained) - (before[r.site].fulls - before[r.site].fulls_retained)
                 for r in after}
    retained = {r.site: r.fulls_retained - before[r.site].fulls_retained for r in after}
    return {
        "fulls_from_hub": sum(hub_fulls.values()), "fulls_retained_again": sum(retained.values()),
        "sites": len(reps), "at_latest_before": len(at_latest), "seconds_broker_restart": t_broker,
        "seconds_hub_connected": hub_back[0], "seconds_all_sites_connected": t_sites,
        "seconds_settled": (t1 - t0) + ack_s, "events_acked_again": ok,
        "all_at_latest": all(r.version == latest[r.site] for r in after),
        "sessions_resumed": sum(r.session_present for r in after),
        "fulls_from_hub_to_sites_at_latest": sum(hub_fulls[s] for s in at_latest),
        "fulls_retained_again_to_sites_at_latest": sum(retained[s] for s in at_latest),
        "deltas": sum(r.deltas - before[r.site].deltas for r in after),
        "stale_refusals": sum(r.refused.get("stale_version", 0) - before[r.site].refused.get("stale_version", 0)
                              for r in after),
        "connect_failures": sum(r.connect_failures - before[r.site].connect_failures for r in after),
    }


def run_round(args: argparse.Namespace, tmp: Path, n: int, pg: Postgres | None) -> dict[str, Any]:
    """One round with ``n`` hub nodes, from scratch in ``tmp``."""
    results: dict[str, Any] = {"nodes": n}
    with BookingPlatform(page_size=args.page_size, indexed=True) as platform:
        sc = make_scale_county(tmp, platform, args.sites)
        store = fresh_store_url(pg) if pg is not None else None if args.store == "sqlite" else args.store
        url = store or store_url(sc)
        members = max(1, args.bookings // 5)
        print(f"[{n} node(s)] {args.sites} sites, {members:,} members; bookings ...", flush=True)
        seed_members(url, members)
        bookings = make_bookings(sc, args.bookings, members)
        want = expected_entries(sc, bookings)
        with sc.broker:
            print(f"[{n} node(s)] ingest: bare subscriber ...", flush=True)
            results["ingest"] = ingest_bare(sc, args.per_process, args.events)
            print(f"[{n} node(s)] hub ...", flush=True)
            with HubNodes(sc.county.hub_config_path, n, store=store,
                          log_level=args.hub_log_level, profile=args.profile_hub) as nodes:
                wait_for(platform.listing_calls, 60, what="the hub's first sync")
                rss0 = nodes.rss()
                print(f"[{n} node(s)] sites connecting ...", flush=True)
                with Fleet(sc.sim_config(), sc.logins(), per_process=args.per_process) as fleet:
                    first = first_caches(fleet, url, sc, args.timeout)
                    rss1 = nodes.rss()
                    results["leader"] = nodes.leader(url)
                    results["memory"] = {"hub_rss_no_sites": rss0, "hub_rss_sites": rss1,
                                         "per_site_bytes": (sum(rss1) - sum(rss0)) / args.sites,
                                         "broker_rss": rss_bytes(sc.broker.proc.pid) if sc.broker.proc else None,
                                         "seconds_first_caches": first}
                    print(f"[{n} node(s)] ingest: hub ...", flush=True)
                    results["ingest"].update(ingest_hub(fleet, sc, args.events))
                    print(f"[{n} node(s)] sync: {args.bookings:,} bookings ...", flush=True)
                    results["sync"] = sync_phase(fleet, platform, url, sc, bookings, want, args.timeout, touch=False)
                    results["memory"]["hub_rss_after_sync"] = nodes.rss()
                    changed = bookings[: min(100, args.sites, len(bookings))]
                    cancelled = [{**b, "status": "cancelled"} for b in changed]
                    want2 = expected_entries(sc, [b for b in bookings[len(changed):]] + cancelled)
                    print(f"[{n} node(s)] delta: {len(changed)} bookings cancelled ...", flush=True)
                    results["delta"] = sync_phase(fleet, platform, url, sc, cancelled, want2, args.timeout, touch=True)
                    print(f"[{n} node(s)] broker restart ...", flush=True)
                    results["storm"] = storm(fleet, nodes, url, sc, args.timeout)
                    results["memory"]["broker_rss_after"] = rss_bytes(sc.broker.proc.pid) if sc.broker.proc else None
                    results["leader_after"] = nodes.leader(url)
    return results


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
                               "sites": args.sites, "bookings": args.bookings, "events": args.events,
                               "nodes": args.node_counts,
                               "store": args.store if args.store in ("sqlite", "postgres") else "postgresql (URL)",
                               "rounds": []}
    raise_fd_limit(4 * args.sites + 1024)  # Mosquitto inherits it: one descriptor per connection
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(Postgres()) if args.store == "postgres" else None
        for n in args.node_counts:
            results["rounds"].append(run_round(args, tmp / f"nodes-{n}", n, pg))
    results["machine"]["loadavg_end"] = loadavg()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--bookings", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10, help="events per site for the ingest measurement")
    ap.add_argument("--nodes", default="1", help="hub processes on one configuration; several counts, e.g. 1,2,3: "
                    "one round each, side by side")
    ap.add_argument("--store", default="sqlite", help="sqlite (default), postgres (a temporary server) or a "
                    "postgresql:// URL of an empty store (one node count only)")
    ap.add_argument("--per-process", type=int, default=500, help="simulated sites per worker process")
    ap.add_argument("--page-size", type=int, default=2000, help="bookings per platform page")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each phase")
    ap.add_argument("--hub-log-level", default="info", choices=["debug", "info", "warning", "error"])
    ap.add_argument("--keep", action="store_true", help="keep the working directory (logs, store, profiles)")
    ap.add_argument("--profile-hub", action="store_true", help="run the hub nodes under cProfile (use with --keep)")
    ap.add_argument("--out", default="bench-results/bench_scale.json")
    args = ap.parse_args()
    if args.sites < 1 or args.bookings < 1 or args.events < 1:
        ap.error("--sites, --bookings and --events must be at least 1")
    try:
        args.node_counts = parse_nodes(args.nodes)
        args.store = store_choice(args.store, len(args.node_counts))
    except ValueError as exc:
        ap.error(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        results = run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(rows(results), results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
