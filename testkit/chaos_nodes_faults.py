"""The multi-node variant's faults, report and verdicts (testkit.chaos_nodes describes the
variant and sets it up): the nodes' fault thread (leader, other and mid-publish kills, the
PostgreSQL restart), the leader as the store names it, and what the run reports of it."""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hub.store import open_store

from . import chaos_data
from .chaos_nodes import NODE_SIZES, Cluster, NodesSize, node_of
from .chaos_nodes_check import job_runs, leader_changes, overlaps
from .chaos_procs import Proc

if TYPE_CHECKING:
    from .chaos import Size, World

BUILT = re.compile(r"site (\S+): cache version (\d+), \d+ entries")
PUBLISHED = re.compile(r"site (\S+): published cache\.(?:delta \S+→(\d+)|full version (\d+))")
#: Slack over the lease for a takeover after a leader's death (scheduling on a loaded 2-core machine).
TAKEOVER_SLACK = 1.5




class Faults(Protocol):
    """What the nodes' faults need of the fault phase (testkit.chaos_faults.Faults is one)."""

    @property
    def world(self) -> World: ...

    @property
    def seed(self) -> int: ...

    @property
    def counts(self) -> Counter[str]: ...

    @property
    def notes(self) -> list[str]: ...

    def at(self, t: float) -> bool:
        """Wait until ``t`` seconds into the fault phase; False if the phase is stopping."""

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the phase is stopping."""


def variant(size: Size, n: int) -> tuple[Size, NodesSize]:
    """The run's size and the nodes' part for ``n`` nodes (``size`` named as before)."""
    ns = replace(NODE_SIZES[size.name], nodes=n)
    return replace(size, name=f"{size.name}-{n}nodes-postgres", **ns.base), ns


def leader(world: World, renewed_after: float = 0.0) -> str | None:
    """The node that holds the lease now (the store's), or None (none, or the store is
    down); with ``renewed_after``, only if its holder renewed it after that wall time (a
    node restarted since then is not the leader while the lease still names its dead
    predecessor)."""
    try:
        with open_store(world.hub_config.hub.store_url) as store:
            lease = store.lease()
    except Exception:
        return None
    if lease is None or lease.holder is None or lease.expires_at <= time.time() or lease.renewed_at <= renewed_after:
        return None
    return lease.holder


# --- the faults -------------------------------------------------------------------------------------


def plan(ns: NodesSize, seed: int, fault_seconds: float) -> list[tuple[float, str, float]]:
    """(moment, kind, seconds down) of each fault, one at a time over the first 80 % of the phase."""
    rng = random.Random(f"{seed}:nodes")
    kinds = (["leader"] * ns.leader_kills + ["other"] * ns.other_kills + ["publish"] * ns.publish_kills
             + ["postgres"] * ns.pg_restarts)
    rng.shuffle(kinds)
    slot = 0.8 * fault_seconds / max(1, len(kinds))
    return [(i * slot + rng.uniform(0.05, 0.5) * slot, k, _down_seconds(ns, k, rng)) for i, k in enumerate(kinds)]


def _down_seconds(ns: NodesSize, kind: str, rng: random.Random) -> float:
    """How long a fault keeps its part down. A killed leader stays down for longer than the
    lease, so that another node has to take over (and the takeover is timed); a leader
    back sooner takes its own lease back at its start, which the publish kills (and the
    other nodes' kills) with their shorter times leave to chance."""
    if kind == "postgres":
        return rng.uniform(*ns.pg_down_seconds)
    if kind == "leader":
        return ns.lease_seconds + rng.uniform(2.0, 6.0)
    return rng.uniform(*ns.down_seconds)


def faults(f: Faults) -> None:
    """The nodes' fault thread (``Faults.start``): the plan's faults in order."""
    w = f.world
    cl: Cluster = w.cluster
    rng = random.Random(f"{f.seed}:nodes-pick")
    for t, kind, down in plan(cl.size, f.seed, w.size.fault_seconds):
        if not f.at(t):
            return
        if kind == "postgres":
            cl.pg.stop()
            f.counts["pg_restart"] += 1
            w.say(f"fault: postgresql stopped, back in {down:.1f} s")
            f.sleep(down)
            cl.pg.start(timeout=60)
            cl.records.append({"kind": "postgres", "at": time.time(), "down_s": round(down, 1)})
            w.say("fault: postgresql running again")
            continue
        head = _wait_leader(f)
        if head is None:
            f.notes.append(f"nodes: no leader to tell apart for a {kind} fault")
            continue
        if kind == "publish":
            done = _publish_kill(f, head, rng)
        else:
            label = f"hub {head}" if kind == "leader" else rng.choice([x for x in w.hubs if node_of(x) != head])
            done = _kill(f, label, kind, {"was_leader": kind == "leader"})
        if done is not None:
            f.sleep(down)
            with done.lock:
                done.start()
                cl.last_start = time.time()
            w.say(f"fault: {done.name} started again after {down:.1f} s")


def _wait_leader(f: Faults, timeout: float = 60.0) -> str | None:
    """The leader, once every node runs (a node restarted by the last fault too)."""
    w = f.world
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = leader(w, renewed_after=w.cluster.last_start)
        if head is not None and all(p.pid is not None for p in w.hubs.values()):
            return head
        if not f.sleep(0.2):
            return None
    return None


def _kill(f: Faults, label: str, kind: str, extra: dict[str, Any]) -> Proc | None:
    w = f.world
    p = w.hubs[label]
    with p.lock:
        if p.pid is None:
            return None
        at = time.time()
        p.kill()
    w.cluster.kills.setdefault(node_of(label), []).append(at)
    f.counts["node_kill"] += 1
    f.counts[f"{kind}_kill"] += 1
    w.cluster.records.append({"kind": kind, "node": node_of(label), "at": at, **extra})
    w.say(f"fault: {label} SIGKILLed ({kind}{', the leader' if extra.get('was_leader') else ''})")
    return p


def _publish_kill(f: Faults, head: str, rng: random.Random, tries: int = 5) -> Proc | None:
    """Change bookings, SIGKILL the leader at its first new cache version of them."""
    w = f.world
    label = f"hub {head}"
    small = [s for s in sorted(w.sites) if s not in w.pop.big]
    for _ in range(tries):
        p = w.hubs[label]
        log = p.log
        pos = log.stat().st_size
        sites = [*rng.sample(small, 2), rng.choice(w.pop.big)]
        for s in sites[:2]:
            chaos_data.small_change(w.pop, w.platform, s, rng)
        chaos_data.big_change(w.pop, w.platform, sites[2], rng, share=0.25)
        f.counts["publish_kill_attempt"] += 1  # the wait below allows for a failing platform
        seen = _watch(f, log, pos, set(sites), timeout=3 * w.hub_config.booking.sync_interval_seconds + 45)
        if seen is None or leader(w) not in (head, None):
            f.counts["publish_not_seen"] += 1
            continue
        done = _kill(f, label, "publish", {"was_leader": True, "sites": sites, "first_built": seen})
        if done is None:
            continue
        text = log.read_bytes()[pos:].decode(errors="replace")
        built = {m.group(1): int(m.group(2)) for m in BUILT.finditer(text) if m.group(1) in sites}
        published: dict[str, int] = {}
        for m in PUBLISHED.finditer(text):
            v = int(m.group(2) or m.group(3))
            published[m.group(1)] = max(v, published.get(m.group(1), 0))
        unpublished = sorted(s for s, v in built.items() if published.get(s, 0) < v)
        not_reached = sorted(set(sites) - set(built))
        landed = bool(unpublished or not_reached)
        f.counts["publish_kill_landed"] += landed
        w.cluster.records[-1].update(built=built, unpublished=unpublished, not_reached=not_reached, landed=landed)
        w.say(f"fault: the leader {head} killed {'mid-publish' if landed else 'after its publish'} "
              f"(built {built}, not published {unpublished}, not reached {not_reached})")
        return done
    return None


def _watch(f: Faults, log: Path, pos: int, sites: set[str], timeout: float) -> str | None:
    """Poll ``log`` from ``pos`` for a new cache version of one of ``sites``; that site."""
    deadline = time.monotonic() + timeout
    buf = b""
    with log.open("rb") as fh:
        fh.seek(pos)
        while time.monotonic() < deadline:
            chunk = fh.read()
            if chunk:
                buf += chunk
                for m in BUILT.finditer(buf.decode(errors="replace")):
                    if m.group(1) in sites:
                        return m.group(1)
                buf = buf[buf.rfind(b"\n") + 1:]
            else:
                time.sleep(0.003)  # a tight poll: the kill must land inside the publish
    return None


# --- the report ---------------------------------------------------------------------------------------


def logs(world: World) -> dict[str, str]:
    return {node_of(label): p.log.read_text(errors="replace") if p.log.exists() else ""
            for label, p in world.hubs.items()}


def report(world: World, counts: dict[str, int]) -> dict[str, Any]:
    """The report's ``nodes`` part (after the nodes stopped)."""
    cl: Cluster = world.cluster
    text = logs(world)
    runs = job_runs(text, cl.kills, cl.stopped_at or time.time())
    changes = leader_changes(text, cl.kills)
    takeovers = [c.after_death for c in changes if c.after_death is not None]
    jobs: dict[str, dict[str, Any]] = {}
    for r in runs:
        j = jobs.setdefault(r.job, {"runs": 0, "nodes": {}, "outcomes": {}})
        j["runs"] += 1
        j["nodes"][r.node] = j["nodes"].get(r.node, 0) + 1
        j["outcomes"][r.outcome] = j["outcomes"].get(r.outcome, 0) + 1
    with world.platform.lock:
        released = [bid for bid, _ in world.platform.releases]
    return {
        "nodes": len(world.hubs), "lease_seconds": cl.size.lease_seconds,
        "kills": {k: counts.get(k, 0) for k in ("node_kill", "leader_kill", "other_kill", "publish_kill",
                                                 "publish_kill_attempt", "publish_kill_landed", "publish_not_seen",
                                                 "pg_restart")},
        "planned": {"leader": cl.size.leader_kills, "other": cl.size.other_kills, "publish": cl.size.publish_kills,
                    "postgres": cl.size.pg_restarts},
        "faults": cl.records,
        "jobs": jobs, "overlaps": overlaps(runs),
        "leader_changes": [asdict(c) for c in changes],
        "takeover_after_death_s": takeovers,
        "takeover_max_s": max(takeovers, default=None),
        "vacant_max_s": max((c.vacant for c in changes[1:]), default=None),
        "releases_posted": len(released), "releases_posted_twice": len(released) - len(set(released)),
    }


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    n = r.get("nodes", {})
    k, plan_ = n.get("kills", {}), n.get("planned", {})
    jobs = n.get("jobs", {})
    lease = n.get("lease_seconds", 0)
    return {
        "no_singleton_job_on_two_nodes_at_once": not n.get("overlaps", [1]) and jobs.get("booking-sync", {}).get(
            "runs", 0) > 0 and len(jobs.get("booking-sync", {}).get("nodes", {})) > 1,
        "leader_taken_over_within_the_lease": bool(n.get("takeover_after_death_s"))
        and n["takeover_max_s"] <= lease + TAKEOVER_SLACK,
        "node_faults_injected_as_planned": (
            k.get("leader_kill", 0) >= plan_.get("leader", 1) and k.get("other_kill", 0) >= plan_.get("other", 1)
            and k.get("publish_kill", 0) >= plan_.get("publish", 1) and k.get("pg_restart", 0) >= plan_.get(
                "postgres", 1)),
    }


def table_rows(r: dict[str, Any], ok: Any) -> list[tuple[str, str, str]]:
    n = r.get("nodes", {})
    if not n:
        return []
    k = n.get("kills", {})
    jobs = n.get("jobs", {})
    changes = n.get("leader_changes", [])
    durations = ", ".join(f"{x:.1f}" for x in n.get("takeover_after_death_s", []))
    return [
        ("hub nodes SIGKILLed + restarted", str(k.get("node_kill", 0)),
         f"{k.get('leader_kill', 0)} leaders, {k.get('other_kill', 0)} others, {k.get('publish_kill', 0)} leaders "
         f"at a publish ({k.get('publish_kill_landed', 0)} landed mid-publish, "
         f"{k.get('publish_kill_attempt', 0)} tries)"),
        ("postgresql restarted", str(k.get("pg_restart", 0)), ok("node_faults_injected_as_planned")),
        ("leadership changes (terms)", str(len(changes)),
         f"max {n.get('vacant_max_s')} s without a leader (the nodes' own count from the lease's end)"),
        ("takeover after a leader's SIGKILL", f"max {n.get('takeover_max_s')} s",
         f"lease {n.get('lease_seconds')} s; each: {durations or '-'}; " + ok("leader_taken_over_within_the_lease")),
        ("booking syncs / no-show releases run", f"{jobs.get('booking-sync', {}).get('runs', 0)} / "
         f"{jobs.get('no-show-release', {}).get('runs', 0)}",
         f"on nodes {jobs.get('booking-sync', {}).get('nodes', {})}; {len(n.get('overlaps', []))} at once on two "
         "nodes: " + ok("no_singleton_job_on_two_nodes_at_once")),
    ]


def stop_store(world: World) -> None:
    cl: Cluster | None = world.cluster
    if cl is not None:
        with contextlib.suppress(Exception):
            cl.pg.remove()
