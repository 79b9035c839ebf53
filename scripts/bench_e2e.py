"""End-to-end benchmark: a badge at a simulated site until a connected dashboard client
sees it (issue: live occupancy), and a door forced at a site until the alert e-mail is
accepted by an SMTP server (issue #14).

    scripts/bench_e2e [--sites 20] [--badges 500] [--rate 20] [--forced 20]

Real parts: Mosquitto, the hub as its own process (``python -m hub run``) with
``[alerts]``, --sites agents as their own processes on mock pins with simulated readers
(``testkit.simsite``: the real agent, its door contacts moved through a control FIFO), an
admin's browser-like client on the live stream (Server-Sent Events,
``/api/v1/live?view=json``) and a real SMTP server (aiosmtpd). Badges go round-robin over
the sites at --rate per second (an open loop); each badge's latency runs from writing the
card into the site's reader to the first live update that shows its access event. Then,
one at a time, --forced doors are pulled open without a badge: each from the line written
to the site's control FIFO until the SMTP server has accepted the admin's alert (the door
is shut again, and its all-clear mail awaited, before the next).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, make_county
from testkit.dashboard import SseReader, add_user, login
from testkit.report import report
from testkit.smtpsink import SmtpSink
from testkit.util import port_open, wait_for


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--badges", type=int, default=500)
    ap.add_argument("--rate", type=float, default=20.0, help="badges per second over all sites")
    ap.add_argument("--forced", type=int, default=20, help="doors forced open, one after another")
    ap.add_argument("--out", default="bench-results/bench_e2e.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    procs: list[subprocess.Popen[bytes]] = []
    county = None
    try:
        with Mosquitto(tmp / "broker") as broker, BookingPlatform() as platform, SmtpSink() as smtp:
            smtp.start()
            ids = tuple(f"s{i:02d}" for i in range(args.sites))
            county = make_county(tmp / "county", broker, platform, ids, site_policy={"deny_burst": 1000})
            with_alerts(county, smtp)
            password = add_user(county, "bench", "admin", email="admin@example.org")
            log = (tmp / "hub.log").open("ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "hub", "run", "--config", str(county.hub_config_path)],
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL))
            for s in county.sites.values():
                procs.append(s.start(doors=True))
            wait_for(lambda: port_open("127.0.0.1", county.http_port), 30, what="the hub's HTTP port")
            session = login(county.http_url, "bench", password)

            def online() -> dict[str, Any] | None:
                sites = {s["id"]: s for s in session.get(county.http_url + "/api/v1/sites", timeout=10).json()}
                ok = all((sites.get(i) or {}).get("state") and sites[i]["state"].get("online") for i in ids)
                return sites if ok else None

            wait_for(online, 60, interval=0.2, what="every site online at the hub")
            baseline: dict[str, int] = {}
            for i in ids:
                snap = session.get(f"{county.http_url}/api/v1/sites/{i}", timeout=10).json()
                baseline[i] = max((e["seq"] for e in snap.get("events", [])), default=0)
            reader = SseReader(session, county.http_url + "/api/v1/live?view=json")
            assert reader.status == 200, reader.status
            sent: dict[str, list[float]] = {i: [] for i in ids}
            seen: dict[str, int] = dict.fromkeys(ids, 0)
            access: dict[str, set[int]] = {i: set() for i in ids}
            lat: list[float] = []
            lock = threading.Lock()
            stop = threading.Event()

            def consume() -> None:
                while not stop.is_set():
                    try:
                        ev = reader.wait(lambda e: e.event == "site", timeout=0.5)
                    except TimeoutError:
                        continue
                    snap = ev.json()
                    site = snap.get("id")
                    if site not in sent:
                        continue
                    # A snapshot lists the last events only: collect distinct access seqs.
                    access[site].update(e["seq"] for e in snap.get("events", [])
                                        if e["type"].startswith("access.") and e["seq"] > baseline[site])
                    n = len(access[site])
                    with lock:
                        while seen[site] < min(n, len(sent[site])):
                            lat.append((ev.at - sent[site][seen[site]]) * 1000)
                            seen[site] += 1

            t = threading.Thread(target=consume, daemon=True)
            t.start()
            period = 1.0 / args.rate
            t_next = time.monotonic()
            print(f"{args.badges} badges over {args.sites} sites at {args.rate}/s ...", flush=True)
            for k in range(args.badges):
                site = ids[k % len(ids)]
                delay = t_next - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing of the open-loop load
                with lock:
                    sent[site].append(time.monotonic())
                county.sites[site].badge("eingang-sim", f"em4100:0B{k:08X}")
                t_next += period
            try:
                wait_for(lambda: len(lat) >= args.badges, 60, what="every badge seen on the live stream")
            except TimeoutError:
                missing = {i: (len(sent[i]), seen[i]) for i in ids if seen[i] < len(sent[i])}
                raise TimeoutError(
                    f"not every badge reached the dashboard; (sent, seen) per site: {missing}") from None
            stop.set()
            t.join(5)
            reader.close()
            print(f"{args.forced} doors forced open, one at a time ...", flush=True)
            mail = forced_doors(county, ids, smtp, args.forced)
            results: dict[str, Any] = {
                "sites": args.sites, "badges": args.badges, "rate_per_s": args.rate, "seen": len(lat),
                "p50_ms": statistics.median(lat), "p99_ms": pct(lat, 99), "max_ms": max(lat),
                "forced": len(mail), "forced_mail_p50_ms": statistics.median(mail),
                "forced_mail_p99_ms": pct(mail, 99), "forced_mail_max_ms": max(mail),
                "machine": {"cpus": os.cpu_count()},
            }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    report([
        ("badge → visible on a connected dashboard, p50", f"{results['p50_ms']:.0f} ms",
         f"{results['seen']} badges, {args.sites} sites, {args.rate}/s"),
        ("badge → visible on a connected dashboard, p99", f"{results['p99_ms']:.0f} ms",
         f"goal < 500 ms (max {results['max_ms']:.0f} ms)"),
        ("door forced at a site → alert e-mail accepted by the SMTP server, p50",
         f"{results['forced_mail_p50_ms']:.0f} ms", f"{results['forced']} doors, one at a time"),
        ("door forced at a site → alert e-mail accepted by the SMTP server, p99",
         f"{results['forced_mail_p99_ms']:.0f} ms", f"goal < 2000 ms (max {results['forced_mail_max_ms']:.0f} ms)"),
    ], results, args.out)
    return 0


def with_alerts(county: County, smtp: SmtpSink) -> None:
    """``[alerts]`` in the hub's config: mail through ``smtp``, retries soon."""
    doc = tomllib.loads(county.hub_config_path.read_text())
    doc["alerts"] = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False,
                     "from": "torwart@example.org", "retry_first_seconds": 0.2, "retry_max_seconds": 1.0}
    county.hub_config_path.write_text(tomli_w.dumps(doc))


def more_than(smtp: SmtpSink, n: int) -> Callable[[], bool]:
    return lambda: len(smtp.messages()) > n


def forced_doors(county: County, ids: tuple[str, ...], smtp: SmtpSink, n: int) -> list[float]:
    """Force ``eingang`` open at the sites in turn; the ms until each alert is accepted."""
    lat: list[float] = []
    for k in range(n):
        site = county.sites[ids[k % len(ids)]]
        before = len(smtp.messages())
        t0 = time.monotonic()
        site.act("open eingang")
        wait_for(more_than(smtp, before), 30, interval=0.005, what=f"the alert at {site.site}")
        lat.append((time.monotonic() - t0) * 1000)
        site.act("close eingang")  # the all-clear mail, before the next door
        wait_for(more_than(smtp, before + 1), 30, interval=0.005, what=f"the all-clear at {site.site}")
    return lat


if __name__ == "__main__":
    raise SystemExit(main())
