"""The chaos run: a whole county on one machine under load, with faults injected at random
(seeded) moments, then checked for lost events, wrong decisions, leaks and crashes.

    ChaosRun(workdir, SIZES["short"], seed=1).run() -> report dict (see scripts/chaos.py)

Parts: Mosquitto (password + ACL), the hub as a subprocess (``python -m hub run``), N sites
as subprocesses (``python -m edge run``, mock pins, simulated readers, an OffsetClock),
each reaching the broker through its own TcpProxy; the booking platform fake, the badge
load, a capture of every MQTT message and a rogue client trying bad inputs (testkit.
chaos_load). Faults (testkit.chaos_faults) run on their own threads from a plan drawn from
the seed; the checks are in testkit.chaos_check.

Phases: setup (every site holds the hub's cache) → faults under load → steady (load, no
faults: the resource samples' late end) → converge (load stopped; every event acked,
every cache at the hub's latest version) → checks → stop → privacy scan of every file.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from hub import config as hub_config
from hub.store import open_store

from . import chaos_data, chaos_nodes
from .booking_fake import BookingPlatform
from .broker import Mosquitto
from .chaos_check import CacheLogRecorder, ProcSampler, site_cache_version
from .chaos_db import HubDb, is_pg
from .chaos_load import BadgeLoad, Capture, Rogue
from .chaos_procs import Proc, Say
from .chaos_rogue import ROGUE_SITE, RogueSite
from .county import County, make_county
from .credscan import CredentialScanner
from .site import SiteFiles
from .tcpproxy import ProxyFleet
from .util import wait_for


@dataclass(frozen=True)
class Size:
    name: str
    sites: int
    big_sites: int
    big_bookings: int
    fault_seconds: float
    steady_seconds: float
    badge_rate: float
    broker_kills: int
    hub_kills: int
    apply_kills: int
    agent_kills: int
    cutoffs: int
    cutoff_seconds: tuple[float, float]
    booking_failures: int
    booking_fail_seconds: tuple[float, float]
    disk_full: int
    disk_full_seconds: tuple[float, float]
    clock_steps: int
    bad_inputs: int
    converge_timeout: float
    warmup: float
    min_span: float
    #: The rogue site's attacks (testkit.chaos_rogue) are each tried this many times.
    rogue_rounds: int = 1
    webhook_cycles: int = 2
    reinstalls: int = 1


SIZES = {
    "full": Size("full", sites=10, big_sites=2, big_bookings=4000, fault_seconds=540, steady_seconds=120,
                 badge_rate=12.0, broker_kills=22, hub_kills=11, apply_kills=22, agent_kills=20, cutoffs=4,
                 cutoff_seconds=(60, 150), booking_failures=6, booking_fail_seconds=(20, 45), disk_full=2,
                 disk_full_seconds=(40, 70), clock_steps=24, bad_inputs=150, converge_timeout=240, warmup=30,
                 min_span=100, rogue_rounds=3, webhook_cycles=6, reinstalls=2),
    "short": Size("short", sites=10, big_sites=2, big_bookings=2500, fault_seconds=75, steady_seconds=25,
                  badge_rate=8.0, broker_kills=3, hub_kills=2, apply_kills=3, agent_kills=3, cutoffs=2,
                  cutoff_seconds=(6, 10), booking_failures=2, booking_fail_seconds=(6, 10), disk_full=1,
                  disk_full_seconds=(12, 16), clock_steps=6, bad_inputs=30, converge_timeout=150, warmup=10,
                  min_span=20),
}

LAYOUT_ROOMS = {"eingang": None, "coworking": "coworking"}  # door → room (testkit.site.default_layout)
MAX_ENVELOPE = 8 * 1024 * 1024


@dataclass
class World:
    """Everything the faults act on."""

    workdir: Path
    size: Size
    say: Say
    broker: Mosquitto
    broker_lock: threading.RLock
    hub: Proc
    hub_config: hub_config.HubConfig
    county: County
    sites: dict[str, SiteFiles]
    agents: dict[str, Proc]
    proxies: ProxyFleet
    platform: BookingPlatform
    pop: chaos_data.Population
    load: BadgeLoad
    capture: Capture
    rogue: Rogue
    recorder: CacheLogRecorder
    rogue_site: RogueSite
    control: tuple[str, ...]
    clock_sites: tuple[str, ...]
    disk_site: str | None
    disk_skip: str | None
    offsets: dict[str, Path]
    stopping: threading.Event = field(default_factory=threading.Event)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    #: The hub's processes by label: {"hub": hub}, or one per node ("hub n1", ...; ``hub`` is n1).
    hubs: dict[str, Proc] = field(default_factory=dict)
    #: The multi-node variant's parts (testkit.chaos_nodes.Cluster), or None.
    cluster: Any = None

    def __post_init__(self) -> None:
        self.hubs = self.hubs or {"hub": self.hub}

    @property
    def hub_db(self) -> HubDb:
        """The hub's store: its SQLite file, or its PostgreSQL URL (testkit.chaos_db)."""
        url = self.hub_config.hub.store_url
        return url if isinstance(url, str) and is_pg(url) else self.hub_config.hub.store_path

    def data_dir(self, site: str) -> Path:
        return self.sites[site].data_dir

    def wait_hub_healthy(self, timeout: float = 60.0) -> None:
        urls = [f"{u}/healthz" for u in (self.cluster.urls.values() if self.cluster else [self.county.http_url])]

        def healthy() -> bool:
            try:
                for url in urls:
                    with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (our own hub on loopback)
                        if r.status != 200:
                            return False
                return True
            except OSError:
                return False

        wait_for(healthy, timeout, interval=0.2, what="the hub's /healthz")

    def set_offset(self, site: str, seconds: float) -> None:
        path = self.offsets[site]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{seconds:.3f}\n")
        os.replace(tmp, path)


def setup(workdir: Path, size: Size, seed: int, say: Say, nodes: chaos_nodes.NodesSize | None = None) -> World:
    """``nodes``: the multi-node variant (testkit.chaos_nodes): the hub as several nodes on
    a temporary PostgreSQL."""
    rng = random.Random(f"{seed}:setup")
    site_ids = [f"site-{i:02d}" for i in range(size.sites)]
    big = site_ids[: size.big_sites]
    rest = site_ids[size.big_sites:]
    control = tuple(rest[-3:])  # never restarted: their memory and files are watched all run long
    disk_site = rest[0]
    clock_sites = tuple(rest[1:4])
    # The rogue site: a login of its own in the county, no agent behind it (testkit.chaos_rogue).
    users = {u: secrets.token_urlsafe(18) for u in ["hub", *site_ids, ROGUE_SITE]}
    broker = Mosquitto(workdir / "broker", users=users).start()
    platform = BookingPlatform(page_size=500).start()
    pg, pg_url = chaos_nodes.start_store(say) if nodes is not None else (None, None)
    county = make_county(workdir / "county", broker, platform, (*site_ids, ROGUE_SITE), mqtt_users=users,
                         booking={"sync_interval_seconds": 5, "overlap_seconds": 10, "timeout_seconds": 5,
                                  "grace_before_minutes": 15, "grace_after_minutes": 15},
                         site_policy={"deny_burst": 1000, "deny_refill_seconds": 0.05, "resend_seconds": 2,
                                      "status_interval_seconds": 5, "max_envelope_bytes": MAX_ENVELOPE},
                         store=pg_url)
    if nodes is not None and pg is not None:
        chaos_nodes.configure(county.hub_config_path, pg, nodes)
    cfg = hub_config.load(county.hub_config_path)
    pop = chaos_data.populate(rng, site_ids, big, resource={s: county.resource(s) for s in site_ids},
                              big_bookings=size.big_bookings)
    say(f"county: {len(site_ids)} sites ({', '.join(big)} big), {len(pop.members)} members, "
        f"{pop.total_bookings()} bookings, {len(pop.all_credentials())} credential strings")
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(cfg.hub.store_url)
    try:
        store.sync_sites(cfg.sites)
        chaos_data.enroll(pop, store)
    finally:
        store.close()
    chaos_data.publish(pop, platform)

    proxies = ProxyFleet(broker.host, broker.port, site_ids, log=str(workdir / "proxies.log"))
    offsets: dict[str, Path] = {}
    agents: dict[str, Proc] = {}
    disk_skip: str | None = None
    for s in site_ids:
        files = county.sites[s]
        doc = tomllib.loads(files.config_path.read_text())
        doc["hub"]["port"] = proxies.ports[s]
        files.config_path.write_text(tomli_w.dumps(doc))
        offsets[s] = files.dir / "clock-offset"
        offsets[s].write_text("0\n")
        if s == disk_site:
            disk_skip = _mount_small(files.data_dir)
            if disk_skip is not None:
                say(f"disk-full fault skipped: {disk_skip}")
        env = {"GPIOZERO_PIN_FACTORY": "mock", "TORWART_CLOCK_OFFSET_FILE": str(offsets[s])}
        agents[s] = Proc(f"agent {s}", [sys.executable, "-m", "edge", "run", "--config", str(files.config_path),
                                        "--log-level", "info"], files.dir / "agent.log", env=env)
    hub = Proc("hub", [sys.executable, "-m", "hub", "run", "--config", str(county.hub_config_path),
                       "--log-level", "info"], county.hub_config_path.parent / "hub.log")
    hubs: dict[str, Proc] = {}
    cluster = None
    if nodes is not None and pg is not None:
        hubs, urls = chaos_nodes.node_procs(county.hub_config_path, county.http_port, nodes)
        hub, cluster = hubs["hub n1"], chaos_nodes.Cluster(nodes, pg, urls)
    sites = {s: county.sites[s] for s in site_ids}
    rogue_site = RogueSite.for_county(broker, users[ROGUE_SITE], cfg, pop, victim=clock_sites[0], among=rest,
                                      seed=seed)
    if cluster is not None:
        chaos_nodes.adapt_rogue(rogue_site, cfg, "n1")
    hub_db: HubDb = cfg.hub.store_url if pg_url else cfg.hub.store_path
    scanner = CredentialScanner(pop.all_credentials())
    capture = Capture(broker.host, broker.hub_port, "hub", users["hub"], scanner)
    world = World(
        workdir=workdir, size=size, say=say, broker=broker, broker_lock=threading.RLock(), hub=hub,
        hub_config=cfg, county=county, sites=sites, agents=agents, proxies=proxies, platform=platform,
        pop=pop, load=BadgeLoad(sites, pop, size.badge_rate, random.Random(f"{seed}:load")),
        capture=capture,
        rogue=Rogue(broker.host, broker.port, users, capture, random.Random(f"{seed}:rogue"), sites=site_ids,
                    oversize=MAX_ENVELOPE + 1024 * 1024, oversize_sites=[s for s in site_ids if s not in control]),
        recorder=CacheLogRecorder(hub_db, workdir / "chaos-cachelog.db"), rogue_site=rogue_site,
        control=control, clock_sites=clock_sites, disk_site=None if disk_skip else disk_site, disk_skip=disk_skip,
        offsets=offsets, hubs=hubs, cluster=cluster,
    )
    capture.start()
    for h in world.hubs.values():
        h.start()
    world.wait_hub_healthy(120)
    for p in agents.values():
        p.start()
    world.recorder.start()
    return world


def _mount_small(path: Path, size: str = "24m") -> str | None:
    """Mount a small tmpfs on ``path`` (the site's data directory); None, or why not."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "not root: cannot mount a small tmpfs for the site's data directory"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return f"mount refused: {r.stderr.strip() or r.returncode}"
    return None


def unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


def converged_caches(world: World) -> dict[str, tuple[int | None, int | None]]:
    """Sites whose applied cache is not the hub's latest: site → (site's, hub's)."""
    conn_rows: dict[str, int] = {}
    from .chaos_check import ro

    with contextlib.closing(ro(world.hub_db)) as conn:
        conn_rows = dict(conn.execute("SELECT site_id, version FROM cache_sites").fetchall())
    out = {}
    for s in world.sites:
        v = site_cache_version(world.data_dir(s))[0]
        if v != conn_rows.get(s):
            out[s] = (v, conn_rows.get(s))
    return out


def all_connected(world: World) -> bool:
    """Every site's proxy carries exactly one connection and the hub answers: a moment
    like any other for comparing open files."""
    stats = world.proxies.stats()
    if any(stats[s]["connections"] != 1 for s in world.sites):
        return False
    try:
        world.wait_hub_healthy(1.0)
    except TimeoutError:
        return False
    return True


def monitor(world: World, restart: bool = True) -> None:
    """Record processes that ended on their own (crashes) and start them again."""
    for name, p in [*world.hubs.items(), *[(f"agent {s}", a) for s, a in world.agents.items()]]:
        rc = p.crashed()
        if rc is not None:
            world.crashes.append({"process": name, "returncode": rc, "at": round(time.monotonic() - world.say.t0, 1)})
            world.say(f"CRASH: {name} exited with {rc} on its own")
            if restart and not world.stopping.is_set():
                p.start()
    with world.broker_lock:
        bp = world.broker.proc
        if bp is not None and bp.poll() is not None:
            world.crashes.append({"process": "mosquitto", "returncode": bp.returncode,
                                  "at": round(time.monotonic() - world.say.t0, 1)})
            world.say(f"CRASH: mosquitto exited with {bp.returncode} on its own")
            world.broker.proc = None
            if restart and not world.stopping.is_set():
                world.broker.start()


def sampler_for(world: World) -> ProcSampler:
    def pids() -> dict[str, int | None]:
        out: dict[str, int | None] = {"driver (load, capture, booking fake)": os.getpid(),
                                      **{label: h.pid for label, h in world.hubs.items()}, "proxies": world.proxies.pid}
        bp = world.broker.proc
        out["mosquitto"] = bp.pid if bp is not None and bp.poll() is None else None
        for s, a in world.agents.items():
            out[f"agent {s}"] = a.pid
        return out

    return ProcSampler(pids, interval=5.0)


def shutdown(world: World) -> dict[str, int | None]:
    """Stop everything gracefully; the exit status of each process."""
    world.stopping.set()
    codes: dict[str, int | None] = {}
    for s, a in world.agents.items():
        codes[f"agent {s}"] = a.stop()
    for label, h in world.hubs.items():
        codes[label] = h.stop()
    if world.cluster is not None:
        world.cluster.stopped_at = time.time()
    world.capture.stop()
    world.recorder.stop()
    codes["proxies"] = world.proxies.stop()
    with world.broker_lock:
        world.broker.stop()
    world.platform.stop()
    return codes


def keep_copy(world: World) -> None:
    """Copy the tmpfs-backed data directory out before it is unmounted (post-mortem)."""
    if world.disk_site is None:
        return
    src = world.data_dir(world.disk_site)
    dst = src.parent / "data-copy"
    with contextlib.suppress(OSError):
        shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("sim-*"))

