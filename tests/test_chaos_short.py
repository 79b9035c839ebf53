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
