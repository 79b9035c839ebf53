"""One chaos run from setup to verdicts: ``run_chaos(workdir, SIZES[name], seed)`` returns the
report (a JSON-able dict with ``verdicts`` and ``ok``); ``table(report)`` the rows to print.

See testkit.chaos for the parts and phases, testkit.chaos_faults for the faults and
testkit.chaos_check for the checks. docs/reliability.md explains each verdict.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import chaos_nodes_faults, chaos_rogue_check
from .chaos import (
    LAYOUT_ROOMS,
    Size,
    World,
    all_connected,
    converged_caches,
    keep_copy,
    monitor,
    sampler_for,
    setup,
    shutdown,
    unmount,
)
from .chaos_check import (
    ProcSampler,
    access_events,
    applied_versions,
    check_decisions,
    event_types,
    ro,
    tracebacks,
)
from .chaos_db import scan_store
from .chaos_events import check_sequences
from .chaos_faults import Faults, make_plan
from .chaos_procs import Say
from .credscan import Finding, files_under
from .util import wait_for

#: Memory tolerance: growth from the early to the late sample of one process life.
RSS_TOL_KIB = 8 * 1024
RSS_TOL_FRAC = 0.10
FD_TOL = 3
#: What must hold credentials (the hub computes per-site keyed hashes from them).
PRIVACY_EXCEPTIONS = (("credentials", "credential"), ("bookings", "pin"))


def _before(faults: Faults | None) -> dict[str, list[tuple[Path, int]]]:
    """Per reinstalled site: its outboxes from before, and how far the hub acked them."""
    out: dict[str, list[tuple[Path, int]]] = {}
    for x in faults.reinstalls if faults is not None else []:
        out.setdefault(x["site"], []).append((Path(x["old_outbox"]), x["old_acked"]))
    return out


def _sequences(world: World, faults: Faults | None) -> dict[str, dict[str, Any]]:
    return check_sequences(world.hub_db, {s: world.data_dir(s) for s in world.sites}, _before(faults))


def _converged(world: World, faults: Faults | None = None) -> bool:
    monitor(world)
    if not all(v["ok"] for v in _sequences(world, faults).values()):
        return False
    world.recorder.poll()
    return not converged_caches(world)


def _settled_sequences(world: World, faults: Faults, timeout: float = 20.0) -> dict[str, dict[str, Any]]:
    """The sequence check once every site holds the ack of its last event: a badge
    presented as the load stopped may be decided (an event) after convergence was seen;
    a lost event stays missing however long this waits."""
    seqs: dict[str, dict[str, Any]] = {}

    def ok() -> bool:
        nonlocal seqs
        seqs = _sequences(world, faults)
        return all(v["ok"] for v in seqs.values())

    with contextlib.suppress(TimeoutError):
        wait_for(ok, timeout, interval=0.5, what="every site's last event acknowledged")
    return seqs


def run_chaos(workdir: Path, size: Size, seed: int, *, echo: bool = True, nodes: int = 1) -> dict[str, Any]:
    """``nodes`` > 1: the multi-node variant (testkit.chaos_nodes: that many hub nodes on
    PostgreSQL, the size adapted to it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    say = Say(workdir / "chaos.log", echo)
    ns = None
    if nodes > 1:
        size, ns = chaos_nodes_faults.variant(size, nodes)
    say(f"chaos run: size {size.name}, seed {seed}, workdir {workdir}")
    t_start = time.monotonic()
    world = setup(workdir, size, seed, say, ns)
    report: dict[str, Any] = {"size": size.name, "seed": seed, "workdir": str(workdir), "sites": len(world.sites)}
    sampler: ProcSampler | None = None
    faults: Faults | None = None
    phases: dict[str, float] = {}
    try:
        wait_for(lambda: not converged_caches(world), 240, interval=1.0, what="every site holding the hub's cache")
        phases["setup_s"] = round(time.monotonic() - t_start, 1)
        say(f"every site holds the hub's cache ({phases['setup_s']} s); load and faults start")
        sampler = sampler_for(world)
        sampler.start()
        world.load.start()
        time.sleep(size.warmup)  # pacing: the load warms every process up before the first checkpoint
        wait_for(lambda: all_connected(world), 60, interval=0.5, what="every site connected")
        sampler.checkpoint("start")
        plan = make_plan(world, seed)
        faults = Faults(world, plan, seed)
        t_faults = time.monotonic()
        faults.start()
        faults.join(grace=max(60.0, size.fault_seconds * 0.25))
        phases["faults_s"] = round(time.monotonic() - t_faults, 1)
        say(f"faults over ({dict(faults.counts)}); steady load for {size.steady_seconds:.0f} s")
        wait_for(lambda: all_connected(world), 120, interval=0.5, what="every site connected again")
        sampler.checkpoint("steady")
        t_steady = time.monotonic()
        while time.monotonic() - t_steady < size.steady_seconds:  # pacing: load without faults
            monitor(world)
            time.sleep(0.5)
        world.load.stop()
        phases["steady_s"] = round(time.monotonic() - t_steady, 1)
        t_conv = time.monotonic()
        say("load stopped; waiting until every event is acknowledged and every cache converged")
        converged = True
        try:
            wait_for(lambda: _converged(world, faults), size.converge_timeout, interval=1.0, what="convergence")
        except TimeoutError:
            converged = False
            say("NOT CONVERGED within the timeout")
        phases["converge_s"] = round(time.monotonic() - t_conv, 1)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: all_connected(world), 30, interval=0.5, what="every site connected")
        sampler.checkpoint("end")
        sampler.stop()
        report.update(_checks(world, faults, sampler, converged))
    finally:
        say("stopping everything")
        world.load.stop()
        if sampler is not None:
            sampler.stop()
        exit_codes = shutdown(world)
        report["exit_codes"] = exit_codes
        report.update(_after_stop(world, exit_codes))
        if world.cluster is not None:
            report["nodes"] = chaos_nodes_faults.report(world, dict(faults.counts) if faults else {})
            chaos_nodes_faults.stop_store(world)
        keep_copy(world)
        if world.disk_site is not None:
            unmount(world.data_dir(world.disk_site))
        phases["total_s"] = round(time.monotonic() - t_start, 1)
        report["phases"] = phases
        world.recorder.close()
    report["verdicts"] = _verdicts(report, size)
    if world.cluster is not None:
        report["verdicts"].update(chaos_nodes_faults.verdicts(report))
    report["ok"] = all(report["verdicts"].values())
    say(f"chaos run {'PASSED' if report['ok'] else 'FAILED'} in {phases['total_s']} s")
    say.close()
    return report


def _checks(world: World, faults: Faults, sampler: ProcSampler, converged: bool) -> dict[str, Any]:
    size = world.size
    out: dict[str, Any] = {"converged": converged}
    world.recorder.poll()
    seqs = _settled_sequences(world, faults)
    out["events"] = {
        "per_site": seqs,
        "emitted": sum(v["emitted"] for v in seqs.values()) + sum(x["old_last_seq"] for x in faults.reinstalls),
        "stored": sum(v["stored"] for v in seqs.values()),
        # Events a reinstalled site's old outbox held unacknowledged when its disk was wiped:
        # gone with the disk, unless the hub had stored them before its ack came back.
        "wiped_unacked": sum(x["old_last_seq"] - x["old_acked"] for x in faults.reinstalls),
        "lost": sum(max(v["missing"], v["emitted"] - v["stream_distinct"]) for v in seqs.values()),
        "duplicates": sum(v["stream_duplicates"] for v in seqs.values()),
        "gaps": sum(v["stream_gaps"] + (len(v["gaps"]) if v["streams"] <= 1 else 0) for v in seqs.values()),
        "sites_ok": sum(v["ok"] for v in seqs.values()),
        "types": {s: dict(c) for s, c in event_types(world.hub_db).items()},
    }
    events = {s: evs for s, evs in access_events(world.hub_db).items() if s in world.sites}
    dec = check_decisions(events, world.recorder.rows, valid_seconds=world.hub_config.hub.cache_valid_hours * 3600,
                          door_rooms={s: dict(LAYOUT_ROOMS) for s in world.sites})
    out["decisions"] = dec.as_dict()
    hub_versions = {s: world.recorder.versions(s) for s in world.sites}
    applied = applied_versions(world.hub_db)
    foreign = {s: sorted(set(v) - hub_versions[s]) for s, v in applied.items() if set(v) - hub_versions[s]}
    out["caches"] = {"not_converged": {s: list(v) for s, v in converged_caches(world).items()},
                     "versions_issued": {s: len(v) for s, v in hub_versions.items()},
                     "applied_versions_not_issued_by_hub": foreign}
    load = world.load
    secs = max(1e-9, load.stopped_at - load.started_at)
    out["load"] = {"presented": load.presented, "per_second": round(load.presented / secs, 2),
                   "seconds": round(secs), "outcomes": dict(load.stats), "categories": dict(load.categories),
                   "garbage_lines": load.categories["garbage"]}
    # Decisions made while the disk was full: committed later, with their own (decision) time.
    for d in faults.disk:
        d["decisions_during"] = sum(1 for ev in events.get(d["site"], []) if d["start"] <= ev["ts"] <= d["freed_at"])
    out["faults"] = {"counts": dict(faults.counts), "apply_kills": faults.apply_kills, "disk_full": faults.disk,
                     "disk_full_skipped": world.disk_skip, "notes": faults.notes,
                     "proxies": world.proxies.stats()}
    out["bad_inputs"] = {"tried": dict(world.rogue.tried), "not_delivered": dict(world.rogue.failed),
                         "total": world.rogue.total() + load.categories["garbage"],
                         "reader_garbage_lines": load.categories["garbage"],
                         "cache_refusals_seen": dict(world.capture.cache_refusals),
                         "command_refusals_seen": dict(world.capture.command_refusals)}
    judged = [*world.hubs, "mosquitto", "proxies", *[f"agent {s}" for s in world.control]]
    res = {}
    for label in judged:
        # A hub node's role (leader or follower) changes with the faults, and its memory with
        # it: in the multi-node variant the nodes are judged over the steady phase.
        since = "steady" if world.cluster is not None and label in world.hubs else None
        v = sampler.verdict(label, min_span=size.min_span, rss_tol_kib=RSS_TOL_KIB,
                            rss_tol_frac=RSS_TOL_FRAC, fd_tol=FD_TOL, since=since)
        if v is not None:
            res[label] = v
    out["resources"] = res
    # The driver holds the test's own tools (the booking fake, the capture and its scanner):
    # shown, not judged.
    out["resources_info"] = {k: v for k in ["driver (load, capture, booking fake)"]
                             if (v := sampler.verdict(k, min_span=size.min_span,
                                                      rss_tol_kib=RSS_TOL_KIB, rss_tol_frac=RSS_TOL_FRAC,
                                                      fd_tol=FD_TOL)) is not None}
    out["crashes"] = list(world.crashes)
    out["mqtt"] = {"messages": dict(world.capture.kinds), "bytes": world.capture.bytes_seen}
    out["rogue"] = chaos_rogue_check.gather(world, faults, seqs)
    return out


def _after_stop(world: World, exit_codes: dict[str, int | None]) -> dict[str, Any]:
    logs = list(files_under(world.workdir, (".log",)))
    if world.cluster is not None:
        logs.append(world.cluster.pg.log_path)  # what PostgreSQL logged (failed statements, their keys)
    tb = tracebacks(logs)
    scanner = world.capture.scanner
    for p in logs:
        scanner.scan_file(p)
    dbs = [p for p in files_under(world.workdir, (".db", ".sqlite3")) if "data-copy" not in p.parts]
    exceptions = []
    for p in dbs:
        if p.name == "mosquitto.db":
            scanner.scan_file(p, "broker persistence")
            continue
        skip = PRIVACY_EXCEPTIONS if p == world.hub_db else ()
        if skip:
            exceptions = [f"{p.name}: table {t}, column {c}" for t, c in skip]
        try:
            scanner.scan_sqlite(p, skip=skip)
        except Exception as exc:  # a file the scan cannot read is a finding of its own
            scanner.findings.append(Finding(str(p), f"unreadable: {exc}"))
    if world.cluster is not None:  # the store is a PostgreSQL database, not a file: its rows
        exceptions = [f"PostgreSQL store: table {t}, column {c}" for t, c in PRIVACY_EXCEPTIONS]
        try:
            scan_store(scanner, world.hub_db, skip=PRIVACY_EXCEPTIONS)
        except Exception as exc:
            scanner.findings.append(Finding(str(world.hub_db), f"unreadable: {exc}"))
    with contextlib.closing(ro(world.hub_db)) as conn:
        must_hold = conn.execute("SELECT count(*) FROM credentials").fetchone()[0]
    unclean = {k: v for k, v in exit_codes.items() if v not in (0, None)}
    return {"tracebacks": tb, "unclean_exits": unclean,
            "privacy": {"findings": len(scanner.findings),
                        "where": sorted({f.where for f in scanner.findings})[:20],
                        "scanned": dict(scanner.scanned), "credentials_searched": len(scanner._strings),
                        "exceptions": exceptions, "hub_credentials_rows": must_hold}}


def _verdicts(r: dict[str, Any], size: Size) -> dict[str, bool]:
    f = r.get("faults", {})
    counts = Counter(f.get("counts", {}))
    disk = f.get("disk_full", [])
    v = {
        "converged": bool(r.get("converged")),
        "events_lost_zero": r.get("events", {}).get("lost", 1) == 0 and r["events"]["sites_ok"] == r["sites"],
        "no_duplicates_or_gaps": r.get("events", {}).get("duplicates", 1) == 0 and r["events"]["gaps"] == 0,
        "decision_mismatches_zero": r.get("decisions", {}).get("mismatches", 1) == 0,
        "every_decision_verified": (r.get("decisions", {}).get("unverifiable", 1) == 0
                                    and not r["decisions"]["chain_breaks"] and r["decisions"]["checked"] > 0),
        "grants_and_denials_both_seen": (r.get("decisions", {}).get("granted", 0) > 0
                                         and r["decisions"]["denied"] > 0),
        "no_command_grants_from_bad_input": r.get("decisions", {}).get("skipped", 1) == 0,
        "caches_converged": (not r.get("caches", {}).get("not_converged", {"?": 0})
                             and not r["caches"]["applied_versions_not_issued_by_hub"]),
        "no_crashes": not r.get("crashes", [1]) and not r.get("unclean_exits"),
        "no_tracebacks": not r.get("tracebacks"),
        "memory_and_files_flat": all(x.get("flat", True) for x in r.get("resources", {}).values())
        and bool(r.get("resources")),
        "no_credentials_leaked": r.get("privacy", {}).get("findings", 1) == 0,
        "faults_injected_as_planned": (
            counts["broker_kill"] >= size.broker_kills and counts["hub_kill"] >= size.hub_kills
            and counts["agent_kill_mid_apply"] >= size.apply_kills and counts["cutoff"] >= size.cutoffs
            and counts["booking_failure"] >= size.booking_failures and counts["clock_step"] >= size.clock_steps
            and (counts["disk_full"] >= size.disk_full or f.get("disk_full_skipped") is not None)
            and not f.get("notes")),
        "applies_killed_left_old_or_new_whole": all(a["whole"] for a in f.get("apply_kills", [])),
        "disk_full_reported_and_decisions_went_on": all(d["log_line"] and d["status_storage_error"]
                                                        and d["status_cleared_after"]
                                                        and d.get("decisions_during", 0) > 0 for d in disk),
        "bad_inputs_tried": r.get("bad_inputs", {}).get("total", 0) > 0,
        **chaos_rogue_check.verdicts(r),
    }
    return v


def table(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, figure, verdict or note) rows for the printed report."""
    c = Counter(r.get("faults", {}).get("counts", {}))
    ev = r.get("events", {})
    dec = r.get("decisions", {})
    load = r.get("load", {})
    verd = r.get("verdicts", {})

    def ok(name: str) -> str:
        return "ok" if verd.get(name) else "FAILED"

    rows = [
        ("run", f"{r['size']} seed {r['seed']}", f"{r.get('sites')} sites, {r.get('phases', {}).get('total_s')} s"),
        ("badges presented (load held)", f"{load.get('presented', 0)}",
         f"{load.get('per_second', 0)}/s over {load.get('seconds', 0)} s"),
        ("decisions granted / denied", f"{dec.get('granted', 0)} / {dec.get('denied', 0)}",
         ok("grants_and_denials_both_seen")),
        ("mosquitto SIGKILLed + restarted", str(c["broker_kill"]), ""),
        ("hub SIGKILLed + restarted", str(c["hub_kill"]), ""),
        ("agents SIGKILLed + restarted", str(c["agent_kill"]),
         f"{c['agent_kill_mid_apply']} before the commit of a cache apply ({c['apply_attempt']} tries)"),
        ("sites cut off from the broker", str(c["cutoff"]), f"{c['cutoff_seconds']} s in all"),
        ("booking platform failing", str(c["booking_failure"]), f"{c['booking_failure_seconds']} s in all"),
        ("site data directory full", str(c["disk_full"]),
         r.get("faults", {}).get("disk_full_skipped") or ok("disk_full_reported_and_decisions_went_on")),
        ("site clock steps", str(c["clock_step"]), ""),
        ("faults injected as planned", "", ok("faults_injected_as_planned")),
        ("bad inputs tried", str(r.get("bad_inputs", {}).get("total", 0)),
         "refusals seen: " + ", ".join(f"{k} {v}" for k, v in
                                       sorted(r.get("bad_inputs", {}).get("cache_refusals_seen", {}).items()))),
        ("events emitted / stored at the hub", f"{ev.get('emitted', 0)} / {ev.get('stored', 0)}",
         f"{ev.get('sites_ok', 0)} of {r.get('sites')} sites exact"),
        ("events lost", str(ev.get("lost", "?")), ok("events_lost_zero")),
        ("seq duplicates / gaps", f"{ev.get('duplicates', '?')} / {ev.get('gaps', '?')}", ok("no_duplicates_or_gaps")),
        ("decisions re-checked against their cache version", str(dec.get("checked", 0)),
         f"{dec.get('versions_folded', 0)} versions folded; unverifiable {dec.get('unverifiable', '?')}"),
        ("decision mismatches", str(dec.get("mismatches", "?")), ok("decision_mismatches_zero")),
        ("caches converged to the hub's latest", str(not r.get("caches", {}).get("not_converged")),
         ok("caches_converged")),
        ("crashes (not injected) / unclean exits", f"{len(r.get('crashes', []))} / {len(r.get('unclean_exits', {}))}",
         ok("no_crashes")),
        ("Traceback lines in logs", str(sum(r.get("tracebacks", {}).values())), ok("no_tracebacks")),
        ("credential strings found in logs, DBs, MQTT", str(r.get("privacy", {}).get("findings", "?")),
         ok("no_credentials_leaked")),
        *chaos_rogue_check.table_rows(r, ok),
        *chaos_nodes_faults.table_rows(r, ok),
    ]
    for group in ("resources", "resources_info"):
        for label, v in r.get(group, {}).items():
            if v.get("judged"):
                verdict = ("flat" if v["flat"] else "GROWING") if group == "resources" else "not judged (test tool)"
                rows.append((f"{label}: RSS / fds early → late",
                             f"{v['rss_early_kib'] // 1024}→{v['rss_late_kib'] // 1024} MiB, "
                             f"{v['fds_early']}→{v['fds_late']}", f"{verdict} over {v['span_s']} s"))
            else:
                rows.append((f"{label}: RSS / fds", "-", v.get("why", "")))
    rows.append(("verdict", "PASSED" if r.get("ok") else "FAILED",
                 ", ".join(k for k, x in verd.items() if not x) or "every check held"))
    return rows
