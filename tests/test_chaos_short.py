"""The chaos run, short size (scripts/chaos --short): ten sites, the hub and Mosquitto as
real processes under a badge load, each kind of fault injected at seeded moments, then
every verdict asserted; a rogue site, replayed platform webhooks and a site reinstall
try what must not work (testkit.chaos_rogue, testkit.chaos_attacks). The verdicts are
invariants checked after the county converged (nothing lost, every decision consistent
with its cache version, caches converged, no crash, nothing leaked, no attack
succeeded), never a timing figure, so a loaded machine makes the run slower, not red.
About two to three minutes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testkit.chaos import SIZES
from testkit.chaos_run import run_chaos, table

SEED = int(os.environ.get("TORWART_CHAOS_SEED", "20261122"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_chaos_run_loses_nothing_and_lets_no_one_in_wrongly(tmp_path: Path) -> None:
    report = run_chaos(tmp_path / "chaos", SIZES["short"], SEED, echo=False)
    (tmp_path / "chaos.json").write_text(json.dumps(report, indent=2, default=str))
    for name, figure, note in table(report):
        print(f"{name:<55} {figure:>24}  {note}")
    failed = [k for k, ok in report["verdicts"].items() if not ok]
    assert not failed, f"failed verdicts {failed}; report in {tmp_path / 'chaos.json'}"
    # The headline figures, asserted one by one so that a failure names itself.
    assert report["events"]["lost"] == 0
    assert report["decisions"]["mismatches"] == 0 and report["decisions"]["unverifiable"] == 0
    assert report["decisions"]["granted"] > 0 and report["decisions"]["denied"] > 0
    assert report["privacy"]["findings"] == 0
    assert report["crashes"] == [] and report["tracebacks"] == {}
    counts = report["faults"]["counts"]
    assert counts["broker_kill"] >= 3 and counts["hub_kill"] >= 2 and counts["agent_kill_mid_apply"] >= 3
    assert report["bad_inputs"]["total"] > 0
    # The rogue site's attacks, the replayed webhooks and the reinstall, each done.
    for kind in ("rogue_takeover_hub", "rogue_takeover_site", "rogue_share_hijack", "rogue_integers", "rogue_payloads",
                 "rogue_foreign_checkins", "rogue_unknown_event", "webhook_pushed", "webhook_replayed",
                 "site_reinstall"):
        assert counts[kind] >= 1, kind


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_chaos_run_on_three_hub_nodes_and_postgresql_loses_nothing_and_runs_no_job_twice(
    tmp_path: Path,
) -> None:
    """The multi-node variant (scripts/chaos --short --nodes 3 --store postgres; testkit.
    chaos_nodes): three hub nodes on a temporary PostgreSQL under the same load and
    faults, a leader SIGKILLed, another node SIGKILLed, the leader SIGKILLed as it
    publishes new caches, PostgreSQL restarted; every verdict of the default run (where
    it applies) and of the variant asserted."""
    report = run_chaos(tmp_path / "chaos", SIZES["short"], SEED, echo=False, nodes=3)
    (tmp_path / "chaos.json").write_text(json.dumps(report, indent=2, default=str))
    for name, figure, note in table(report):
        print(f"{name:<55} {figure:>24}  {note}")
    failed = [k for k, ok in report["verdicts"].items() if not ok]
    assert not failed, f"failed verdicts {failed}; report in {tmp_path / 'chaos.json'}"
    assert report["events"]["lost"] == 0 and report["events"]["duplicates"] == 0
    ev = report["events"]  # a wiped site's unacknowledged events may be gone with its disk
    assert ev["emitted"] - ev["wiped_unacked"] <= ev["stored"] <= ev["emitted"] and ev["stored"] > 0, ev
    assert report["caches"]["not_converged"] == {}
    assert report["crashes"] == [] and report["tracebacks"] == {}
    nodes = report["nodes"]
    kills = nodes["kills"]
    assert kills["leader_kill"] >= 1 and kills["other_kill"] >= 1 and kills["publish_kill"] >= 1
    assert kills["pg_restart"] >= 1
    assert nodes["overlaps"] == []
    assert len(nodes["jobs"]["booking-sync"]["nodes"]) >= 2  # the sync moved with the lease
    assert nodes["takeover_max_s"] is not None and nodes["takeover_max_s"] <= nodes["lease_seconds"] + 1.5
    assert len(nodes["leader_changes"]) >= 3  # the first leader, and one per leader killed
