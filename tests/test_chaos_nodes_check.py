"""The multi-node chaos run's checks on logs made up here (testkit.chaos_nodes_check):
singleton job runs on two nodes at once are found, a run cut by a SIGKILL ends at the
kill, and takeovers are timed from the killed leader's death."""

from __future__ import annotations

import time

from testkit.chaos_nodes_check import job_runs, leader_changes, overlaps


def job(what: str, node: str, term: int, at: float, name: str = "booking-sync") -> str:
    return f"2030-01-01 00:00:00,000 INFO hub.leader_jobs: job {name} {what} on node {node} (term {term}) at {at:.3f}"


def gain(node: str, term: int, at: float, vacant: float, prev: str | None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f",{int(at * 1000) % 1000:03d}"
    since = f"node {prev}'s lease ended" if prev else "the hub started"
    return (f"{stamp} WARNING hub.leader: node {node} is the leader now (term {term}): {vacant:.1f} s without a "
            f"leader since {since}")


def test_runs_one_after_another_on_two_nodes_do_not_overlap() -> None:
    logs = {"n1": "\n".join([job("started", "n1", 1, 100.0), job("ended", "n1", 1, 101.0)]),
            "n2": "\n".join([job("started", "n2", 2, 101.5), job("ended", "n2", 2, 102.0)])}
    runs = job_runs(logs, {}, 200.0)
    assert [(r.node, r.start, r.end, r.outcome) for r in runs] == [("n1", 100.0, 101.0, "ended"),
                                                                   ("n2", 101.5, 102.0, "ended")]
    assert overlaps(runs) == []


def test_a_run_on_a_second_node_while_the_first_still_runs_is_found() -> None:
    logs = {"n1": "\n".join([job("started", "n1", 1, 100.0), job("failed", "n1", 1, 105.0)]),
            "n2": "\n".join([job("started", "n2", 2, 103.0), job("ended", "n2", 2, 104.0)]),
            "n3": "\n".join([job("started", "n3", 2, 103.0, "no-show-release"),
                             job("ended", "n3", 2, 104.0, "no-show-release")])}
    found = overlaps(job_runs(logs, {}, 200.0))
    assert len(found) == 1  # the release is another job
    assert found[0]["job"] == "booking-sync" and found[0]["seconds"] == 1.0
    assert {found[0]["a"]["node"], found[0]["b"]["node"]} == {"n1", "n2"}


def test_a_run_cut_by_a_kill_ends_at_the_kill_or_at_the_runs_end() -> None:
    logs = {"n1": "\n".join([job("started", "n1", 1, 100.0), "=== chaos: start hub n1 (00:00:00) ===",
                             job("started", "n1", 3, 110.0)]),
            "n2": "\n".join([job("started", "n2", 2, 100.5), job("ended", "n2", 2, 101.0)])}
    runs = job_runs(logs, {"n1": [100.2]}, 120.0)
    assert [(r.node, r.end, r.outcome) for r in runs] == [("n1", 100.2, "killed"), ("n2", 101.0, "ended"),
                                                          ("n1", 120.0, "running")]
    assert overlaps(runs) == []
    # had the kill come later, the runs on n1 and n2 would have overlapped
    assert len(overlaps(job_runs(logs, {"n1": [100.7]}, 120.0))) == 1


def test_takeovers_are_timed_from_the_killed_leaders_death() -> None:
    t0 = 2_000_000_000.0
    logs = {"n1": gain("n1", 1, t0, 0.0, None),
            "n2": gain("n2", 2, t0 + 20.0, 0.1, "n1"),
            "n3": gain("n3", 3, t0 + 40.0, 1.2, "n2")}
    # n1 died at +15; its name's next process (not the leader) was killed again at +18
    changes = leader_changes(logs, {"n1": [t0 + 15.0, t0 + 18.0], "n3": [t0 + 30.0]})
    assert [(c.node, c.term, c.previous) for c in changes] == [("n1", 1, None), ("n2", 2, "n1"), ("n3", 3, "n2")]
    assert changes[1].after_death == 5.0  # from n1's death at +15 to n2's takeover at +20
    assert changes[2].after_death is None  # n2 was not killed (its lease lapsed)
    assert changes[2].vacant == 1.2
