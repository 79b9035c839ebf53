"""The demo's summary: what the hub recorded (its event log, read after everything has
stopped), what the demo saw, and whether any process it started is still alive."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .demo_county import SITE_NAMES
from .demo_day import Tally
from .demo_procs import group_alive


def hub_event_counts(hub_config: Path, sites: Sequence[str], *, since: float
                     ) -> tuple[dict[str, Counter[str]], Counter[str]]:
    """Events per type and site in the hub's store since ``since``, and denials by reason."""
    from hub import config as hub_config_mod
    from hub.store import open_store

    counts: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    path = hub_config_mod.load(hub_config, check_files=False).hub.store_path
    if not path.exists():
        return counts, reasons
    store = open_store(path)
    try:
        for site in sites:
            c: Counter[str] = Counter()
            for e in store.events(site_id=site, since=since, limit=1_000_000):
                c[e.type] += 1
                if e.type == "access.denied":
                    reasons[str(json.loads(e.payload).get("reason", "?"))] += 1
            counts[site] = c
    finally:
        store.close()
    return counts, reasons


def ancestors() -> set[int]:
    """This process and its ancestors."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rpartition(")")[2].split()[1])
    return out


def leftover_processes(workdir: Path, pids: Sequence[int]) -> list[str]:
    """Processes still alive that the demo started: anyone left in its children's process
    groups, and any process whose command line names the work directory (as ``ps`` shows
    them; the demo and whoever started it excepted)."""
    left = {pid for pid in pids if group_alive(pid)}
    mine = ancestors()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in cmd and int(proc.name) not in mine:
            left.add(int(proc.name))
    return [str(pid) for pid in sorted(left)]


def summarise(counts: dict[str, Counter[str]], reasons: Counter[str], tally: Tally, *, fast: bool,
              platform_checkins: int, played: float, run: float, dashboard: dict[str, Any], started: int,
              left: list[str], interrupted: bool, error: str | None) -> dict[str, Any]:
    """The summary document (also the ``--summary-json`` file); ``problems`` lists what a
    full ``--fast`` day must show but did not."""

    def total(kind: str) -> int:
        return sum(c[kind] for c in counts.values())

    doc: dict[str, Any] = {
        "grants": total("access.granted"), "denials": total("access.denied"),
        "checkins": total("occupancy.checkin"), "checkouts": total("occupancy.checkout"),
        "held_open_alarms": total("door.held_open"), "forced_open_alarms": total("door.forced_open"),
        "cancelled_card_refused": bool(tally.cancelled_refused),
        "cancelled_card_reason": tally.cancelled_reason,
        "denial_reasons": dict(reasons),
        "per_site": {s: {"grants": c["access.granted"], "denials": c["access.denied"],
                         "checkins": c["occupancy.checkin"], "checkouts": c["occupancy.checkout"],
                         "held_open_alarms": c["door.held_open"], "events": sum(c.values())}
                     for s, c in counts.items()},
        "platform_checkins": platform_checkins,
        "scenes": tally.scenes, "max_scene_lag_seconds": round(tally.max_lag, 2),
        "max_booking_wait_seconds": round(max(tally.booking_waits, default=0.0), 2),
        "day_seconds": round(played, 1), "run_seconds": round(run, 1),
        "dashboard": dashboard, "processes_started": started, "processes_left": left,
        "interrupted": interrupted, "error": error,
    }
    problems: list[str] = []
    if fast:
        for key, ok in (("grants", doc["grants"] > 0), ("denials", doc["denials"] >= 1),
                        ("checkins", doc["checkins"] > 0), ("held_open_alarms", doc["held_open_alarms"] >= 1),
                        ("cancelled_card_refused", doc["cancelled_card_refused"])):
            if not ok:
                problems.append(key)
    if left:
        problems.append("processes_left")
    doc["problems"] = problems
    return doc


def print_report(doc: dict[str, Any], tally: Tally, say: Callable[[str], None]) -> None:
    say("")
    say("Summary (from the hub's event log)")
    keys = ("grants", "denials", "checkins", "checkouts", "held_open_alarms")
    heads = ("grants", "denials", "check-ins", "check-outs", "held open")
    say(f"  {'':<30}" + "".join(f"{h:>12}" for h in heads))
    for site, v in doc["per_site"].items():
        say(f"  {SITE_NAMES.get(site, site):<30}" + "".join(f"{v[k]:>12}" for k in keys))
    say(f"  {'total':<30}" + "".join(f"{doc[k]:>12}" for k in keys))
    refused = "not reached" if tally.cancelled_refused is None else ("yes" if doc["cancelled_card_refused"] else "NO")
    say(f"  cancelled booking's card refused afterwards: {refused}"
        + (f" ({doc['cancelled_card_reason']})" if doc["cancelled_card_reason"] else ""))
    say(f"  denials by reason: {', '.join(f'{k} {v}' for k, v in sorted(doc['denial_reasons'].items())) or '-'}")
    say(f"  check-ins reported to the booking platform: {doc['platform_checkins']}")
    say(f"  run time {doc['run_seconds']:.0f} s (playing {doc['day_seconds']:.0f} s, scenes at most "
        f"{doc['max_scene_lag_seconds']:.1f} s behind their time, bookings at most "
        f"{doc['max_booking_wait_seconds']:.1f} s late at a hall)")
    left = doc["processes_left"]
    say(f"  processes: {doc['processes_started']} started, "
        + (f"STILL RUNNING: {', '.join(left)}" if left else "all stopped"))
    if doc["dashboard"]["note"]:
        say(f"  note: {doc['dashboard']['note']}")
    if doc["problems"]:
        say(f"  PROBLEMS: {', '.join(doc['problems'])}")
