"""The leader logs each run of a singleton job (booking sync, no-show release) where it
starts and where it ends, with the node's name, the lease's term and wall-clock times
(hub.leader_jobs.job_run): what an operator reads to see which node ran what when, and
what the chaos run's multi-node variant checks for runs on two nodes at once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from hub.leader_jobs import JOB_LINE
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.chaos_nodes_check import job_runs
from testkit.county import HubThread, make_county
from testkit.util import wait_for


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hub.leader_jobs"]


def test_each_sync_and_release_run_is_logged_with_node_term_and_times(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hub.leader_jobs")
    county = make_county(tmp_path, broker, booking_platform, store="sqlite")
    before = time.time()
    with HubThread(county, node="one") as hub:
        svc = hub.service
        wait_for(lambda: svc.leading, 10, what="the only node leading")
        term = svc.leadership.term
        # the first scheduled sync runs a second after the node became the leader
        wait_for(lambda: any("job booking-sync ended" in ln for ln in _lines(caplog)), 20, what="a logged sync")
        svc.call(svc._leader_release)  # the scheduled release's own entry (every minute otherwise)
        with pytest.raises(RuntimeError, match="boom"), svc.job_run("test-job"):
            raise RuntimeError("boom")
    after = time.time()
    text = "\n".join(f"INFO hub.leader_jobs: {ln}" for ln in _lines(caplog))
    runs = job_runs({"one": text}, {}, after)
    by_job = {r.job: r for r in runs}
    assert set(by_job) == {"booking-sync", "no-show-release", "test-job"}
    for r in runs:
        assert r.node == "one" and r.term == term and before <= r.start <= r.end <= after
    assert by_job["booking-sync"].outcome == "ended" and by_job["no-show-release"].outcome == "ended"
    assert by_job["test-job"].outcome == "failed"
    started = [ln for ln in _lines(caplog) if (mt := JOB_LINE.search(ln)) and mt.group("what") == "started"]
    assert started and all(f"on node one (term {term}) at " in ln for ln in started)
