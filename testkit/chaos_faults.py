"""The faults of the chaos run, each kind on its own thread, at moments drawn from the seed.

A plan (``make_plan``) fixes what happens when; the timing of the machine decides the rest.
Every fault is counted in ``Faults.counts`` when it has actually been done, with what it
found (e.g. whether a kill landed before the cache apply it interrupted committed).
"""

from __future__ import annotations

import contextlib
import errno
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chaos_attacks, chaos_data, chaos_nodes_faults
from .chaos import World, monitor
from .chaos_attacks import WebhookCycle
from .chaos_check import log_lines, site_cache_version

APPLYING = re.compile(r"cache version (\d+): applying (cache\.full|cache\.delta) \(([^)]*)\) over version (\S+)")
BOOKING_FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("status", {"status": 500}), ("timeout", {"seconds": 3.0}), ("garbage", {}), ("truncated", {}),
    ("wrong_types", {}), ("raw", {}), ("status", {"status": 503}), ("page_loop", {}),
)


def spread(rng: random.Random, n: int, start: float, end: float) -> list[float]:
    """``n`` moments in [start, end), one at random in each of ``n`` equal slots."""
    if n <= 0:
        return []
    slot = (end - start) / n
    return [start + i * slot + rng.uniform(0.1, 0.9) * slot for i in range(n)]


@dataclass
class Plan:
    broker_kills: list[tuple[float, float]]
    hub_kills: list[tuple[float, float]]
    agent_kills: list[tuple[float, str, float]]
    apply_kill_every: float
    cutoffs: list[tuple[float, str, float, bool]]
    booking: list[tuple[float, int, float]]
    disk_full: list[tuple[float, float]]
    clock: list[tuple[float, str, float]]
    bad_inputs: list[float]
    rogue: list[tuple[float, str]] = field(default_factory=list)
    webhooks: list[float] = field(default_factory=list)
    reinstalls: list[tuple[float, str]] = field(default_factory=list)


def make_plan(world: World, seed: int) -> Plan:
    sz = world.size
    rng = random.Random(f"{seed}:plan")
    T = sz.fault_seconds
    sites = sorted(world.sites)
    killable = [s for s in sites if s not in world.control]
    cut_sites = [s for s in sites if s not in world.pop.big]
    clock_offsets = [-7200.0, 0.0, 3 * 86400.0, 0.0, -600.0, 600.0, -86400.0, 0.0, 7200.0, -30.0, 0.0, 86400.0 * 2.5]
    clock_times = spread(rng, sz.clock_steps, 0, T)
    return Plan(
        broker_kills=[(t, rng.uniform(0, 3)) for t in spread(rng, sz.broker_kills, 0, T)],
        # The hub's last life must be long enough to judge its memory: kills in the first 70 %.
        hub_kills=[(t, rng.uniform(0, 5)) for t in spread(rng, sz.hub_kills, 0, 0.7 * T)],
        agent_kills=[(t, rng.choice(killable), rng.uniform(0.5, 5)) for t in spread(rng, sz.agent_kills, 0, T)],
        # An attempt also waits for the hub's next sync and build (5-10 s): plan more of them.
        apply_kill_every=T / (sz.apply_kills * 2.5),
        cutoffs=[(t, cut_sites[i % len(cut_sites)], rng.uniform(*sz.cutoff_seconds), i % 2 == 1)
                 for i, t in enumerate(spread(rng, sz.cutoffs, 0, T - sz.cutoff_seconds[1]))],
        booking=[(t, i % len(BOOKING_FAULTS), rng.uniform(*sz.booking_fail_seconds))
                 for i, t in enumerate(spread(rng, sz.booking_failures, 0, T - sz.booking_fail_seconds[1]))],
        disk_full=[(t, rng.uniform(*sz.disk_full_seconds))
                   for t in spread(rng, sz.disk_full, 0, T - sz.disk_full_seconds[1])],
        clock=[(t, world.clock_sites[i % len(world.clock_sites)], clock_offsets[i % len(clock_offsets)])
               for i, t in enumerate(clock_times)],
        bad_inputs=spread(rng, sz.bad_inputs, 0, T),
        **chaos_attacks.plan(world, seed, spread, killable),
    )


@dataclass
class Faults:
    world: World
    plan: Plan
    seed: int
    counts: Counter[str] = field(default_factory=Counter)
    apply_kills: list[dict[str, Any]] = field(default_factory=list)
    disk: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    webhook_cycles: list[WebhookCycle] = field(default_factory=list)
    reinstalls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t0 = 0.0
        self.end = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- plumbing --------------------------------------------------------------------------------

    def at(self, t: float) -> bool:
        """Wait until ``t`` seconds into the fault phase (pacing); False if stopping."""
        delay = self.t0 + t - time.monotonic()
        return not self._stop.wait(max(0.0, delay))

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` (pacing); False if stopping."""
        return not self._stop.wait(max(0.0, seconds))

    def _thread(self, name: str, fn: Callable[[], None]) -> None:
        def run() -> None:
            try:
                fn()
            except Exception as exc:  # a driver bug is reported, not hidden
                self.notes.append(f"fault thread {name} failed: {type(exc).__name__}: {exc}")
                self.world.say(f"fault thread {name} failed: {exc!r}")

        t = threading.Thread(target=run, name=f"fault-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.end = self.t0 + self.world.size.fault_seconds
        for name, fn in (("broker", self._broker), ("hub", self._hub), ("agents", self._agents),
                         ("apply", self._apply), ("cutoff", self._cutoff), ("booking", self._booking),
                         ("disk", self._disk), ("clock", self._clock), ("rogue", self._rogue),
                         ("rogue-site", lambda: chaos_attacks.rogue(self)),
                         ("webhooks", lambda: chaos_attacks.webhooks(self)),
                         ("reinstall", lambda: chaos_attacks.reinstall(self)), ("monitor", self._monitor),
                         *([("nodes", lambda: chaos_nodes_faults.faults(self))] if self.world.cluster else [])):
            self._thread(name, fn)

    def join(self, grace: float) -> None:
        """Wait for every fault thread to finish its plan (at most ``grace`` s after the
        phase's end), then stop what is left and heal everything."""
        deadline = self.end + grace
        for t in self._threads:
            if t.name == "fault-monitor":
                continue
            t.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self.heal_all()

    def heal_all(self) -> None:
        w = self.world
        for s in w.sites:
            w.proxies.heal(s)
        w.platform.heal()
        for s in w.offsets:
            w.set_offset(s, 0.0)
        if w.disk_site is not None:
            with contextlib.suppress(FileNotFoundError):
                (w.data_dir(w.disk_site) / "filler").unlink()
        w.load.boost(w.disk_site or "", 0)
        with w.broker_lock:
            if not w.broker.running:
                w.broker.start()
        for h in w.hubs.values():
            with h.lock:
                if h.pid is None:
                    h.start()
        for a in w.agents.values():
            with a.lock:
                if a.pid is None:
                    a.start()

    # --- the faults --------------------------------------------------------------------------------

    def _monitor(self) -> None:
        while not self._stop.wait(0.5):
            monitor(self.world)

    def _broker(self) -> None:
        w = self.world
        for t, down in self.plan.broker_kills:
            if not self.at(t):
                return
            with w.broker_lock:
                w.broker.kill()
                self.counts["broker_kill"] += 1
                w.say(f"fault: mosquitto SIGKILLed, back in {down:.1f} s")
                self.sleep(down)
                w.broker.start(timeout=30)

    def _hub(self) -> None:
        w = self.world
        for t, down in self.plan.hub_kills:
            if not self.at(t):
                return
            with w.hub.lock:
                w.hub.kill()
                self.counts["hub_kill"] += 1
                w.say(f"fault: hub SIGKILLed, back in {down:.1f} s")
                self.sleep(down)
                w.hub.start()

    def _agents(self) -> None:
        w = self.world
        for t, site, down in self.plan.agent_kills:
            if not self.at(t):
                return
            a = w.agents[site]
            with a.lock:
                a.kill()
                self.counts["agent_kill"] += 1
                w.say(f"fault: agent {site} SIGKILLed, back in {down:.1f} s")
                self.sleep(down)
                a.start()

    def _apply(self) -> None:
        """Kill a big site's agent while it applies a large cache change; check right after
        that its cache is the old version or the new one, whole."""
        w = self.world
        rng = random.Random(f"{self.seed}:apply")
        target = w.size.apply_kills
        # Past the phase's end too (until join() stops it) if the target is not reached yet.
        while self.counts["agent_kill_mid_apply"] < target and not self._stop.is_set():
            if not self.sleep(rng.uniform(0.5, 1.5) * self.plan.apply_kill_every):
                return
            site = rng.choice(w.pop.big)
            a = w.agents[site]
            log = w.sites[site].dir / "agent.log"
            with a.lock:
                if a.pid is None:
                    continue
                before_v = site_cache_version(w.data_dir(site))[0]
                pos = log.stat().st_size
                chaos_data.big_change(w.pop, w.platform, site, rng)
                self.counts["apply_attempt"] += 1
                found = self._watch(log, pos, timeout=45)
                if found is None:
                    self.counts["apply_not_seen"] += 1
                    continue
                a.kill()
                self.counts["agent_kill"] += 1
                version, tag, size, over = found
                after_v, after_n = site_cache_version(w.data_dir(site))
                w.recorder.poll()
                expect_n = w.recorder.n_entries(site, after_v) if after_v is not None else 0
                mid = after_v != version
                whole = after_v in (version, before_v, None if over == "None" else int(over)) and after_n == expect_n
                if mid:
                    self.counts["agent_kill_mid_apply"] += 1
                self.apply_kills.append({"site": site, "version": version, "kind": tag, "size": size,
                                         "site_version_after": after_v, "entries_after": after_n,
                                         "hub_entries_for_it": expect_n, "before_commit": mid, "whole": whole})
                w.say(f"fault: agent {site} SIGKILLed while applying {tag} {version} ({size}): "
                      f"{'before' if mid else 'after'} its commit; holds {after_v} with {after_n} entries "
                      f"({'whole' if whole else 'NOT WHOLE'})")
                self.sleep(rng.uniform(0.5, 3))
                a.start()

    def _watch(self, log: Path, pos: int, timeout: float) -> tuple[int, str, str, str] | None:
        """Poll the agent log from ``pos`` for the line an apply starts with."""
        deadline = time.monotonic() + timeout
        buf = b""
        with log.open("rb") as f:
            f.seek(pos)
            while time.monotonic() < deadline and not self._stop.is_set():
                chunk = f.read()
                if chunk:
                    buf += chunk
                    for line in buf.split(b"\n"):
                        mt = APPLYING.search(line.decode(errors="replace"))
                        if mt:
                            return int(mt.group(1)), mt.group(2), mt.group(3), mt.group(4)
                    buf = buf[buf.rfind(b"\n") + 1:]
                else:
                    time.sleep(0.003)  # a tight poll: the kill must land inside the apply
        return None

    def _cutoff(self) -> None:
        w = self.world
        for t, site, dur, blackhole in self.plan.cutoffs:
            if not self.at(t):
                return
            w.proxies.cut(site, blackhole=blackhole)
            self.counts["cutoff"] += 1
            self.counts["cutoff_seconds"] += round(dur)
            w.say(f"fault: {site} cut off from the broker ({'blackhole' if blackhole else 'drop'}) for {dur:.0f} s")
            self.sleep(dur)
            w.proxies.heal(site)
            w.say(f"fault: {site} reconnected")

    def _booking(self) -> None:
        w = self.world
        rng = random.Random(f"{self.seed}:booking")
        for t, k, dur in self.plan.booking:
            if not self.at(t):
                return
            kind, params = BOOKING_FAULTS[k]
            if kind == "raw":
                params = {"body": rng.choice([b"\x00\xff" * 40, b'{"items": [', b"null", b'{"items": [1, "x"]}'])}
            w.platform.fail(kind, times=None, **params)
            self.counts["booking_failure"] += 1
            self.counts["booking_failure_seconds"] += round(dur)
            w.say(f"fault: booking platform failing ({kind}) for {dur:.0f} s")
            self.sleep(dur)
            w.platform.heal()
            with w.platform.lock:
                w.platform.calls.clear()  # the fake's request log would grow all run long

    def _disk(self) -> None:
        w = self.world
        if w.disk_site is None:
            return
        site = w.disk_site
        data = w.data_dir(site)
        log = w.sites[site].dir / "agent.log"
        rng = random.Random(f"{self.seed}:disk")
        for t, dur in self.plan.disk_full:
            if not self.at(t):
                return
            start = time.time()
            before = storage_lines(log)
            filled = fill(data / "filler")
            chaos_data.small_change(w.pop, w.platform, site, rng)  # a cache apply that needs space
            w.load.boost(site, 3.0)
            self.counts["disk_full"] += 1
            w.say(f"fault: {site}'s data directory full ({filled // 1024} KiB filler) for {dur:.0f} s")
            self.sleep(dur)

            def said_so(before: int = before, start: float = start) -> tuple[bool, bool]:
                reports = list(w.capture.storage_reports.get(site, []))
                return (storage_lines(log) > before,
                        any(e is not None and ts >= start for ts, e in reports))

            # Held until the site has said so in its log and in its status (other faults, a
            # cut link or a dead broker, may keep the status from the hub for a while), at
            # most a minute longer.
            deadline = time.monotonic() + 60
            while not all(said_so()) and time.monotonic() < deadline and self.sleep(0.5):
                pass
            reported_log, reported_status = said_so()
            held = time.time() - start
            with contextlib.suppress(FileNotFoundError):
                (data / "filler").unlink()
            freed = time.time()
            w.load.boost(site, 0)
            w.say(f"fault: {site}'s data directory freed after {held:.0f} s (log said so: {reported_log}, "
                  f"status said so: {reported_status})")
            # The site's status clears the error once it can write again (and has stored
            # the cache it could not: the hub sends it again within its resend time).
            def cleared(freed: float = freed) -> bool:
                at, error = w.capture.last_status.get(site, (0.0, "?"))
                return at >= freed and error is None

            deadline = time.monotonic() + 90
            while not cleared() and time.monotonic() < deadline and self.sleep(0.5):
                pass
            recovered = cleared()
            self.disk.append({"site": site, "start": start, "seconds": round(held, 1), "filler_kib": filled // 1024,
                              "log_line": reported_log, "status_storage_error": reported_status,
                              "status_cleared_after": recovered, "freed_at": freed})

    def _clock(self) -> None:
        w = self.world
        for t, site, offset in self.plan.clock:
            if not self.at(t):
                return
            w.set_offset(site, offset)
            self.counts["clock_step"] += 1
            w.say(f"fault: {site}'s clock stepped to {offset:+.0f} s")

    def _rogue(self) -> None:
        w = self.world
        for t in self.plan.bad_inputs:
            if not self.at(t):
                return
            w.rogue.one()


def storage_lines(log: Path) -> int:
    """Log lines of an agent saying its storage fails (events or a cache)."""
    return len(log_lines(log, "local storage failing")) + len(log_lines(log, "could not be stored; the old one"))


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full; return the bytes written."""
    n = 0
    with path.open("wb", buffering=0) as f:
        for size in (1 << 20, 65536, 4096, 512):
            try:
                while True:
                    n += f.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return n
