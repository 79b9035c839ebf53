"""The multi-node chaos run's own checks (testkit.chaos_nodes), read from the hub nodes'
logs after the run:

- ``job_runs`` / ``overlaps``: every run of a singleton job (booking sync, no-show
  release) as the nodes logged it (hub.leader_jobs ``JOB_LINE``: start and end, node,
  term, wall time); a run cut short by a SIGKILL ends at the kill. Two runs of one job on
  two nodes whose intervals overlap are a violation: the job ran twice at once.
- ``leader_changes``: every "node X is the leader now (term T)" line with its time, the
  seconds without a leader the node itself logged (the store's lease: from the previous
  term's expiry or release), and, when the previous leader was SIGKILLed, the seconds from
  its death to the takeover.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hub.leader_jobs import JOB_LINE

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_GAIN = re.compile(r"node (?P<node>\S+) is the leader now \(term (?P<term>\d+)\): (?P<vacant>[\d.]+) s without a "
                   r"leader since (?:node (?P<prev>\S+)'s lease ended|the hub started)")


@dataclass(frozen=True)
class JobRun:
    job: str
    node: str
    term: int | None
    start: float
    end: float
    outcome: str  # ended, failed, killed (cut short by a SIGKILL), running (the run's end)


@dataclass(frozen=True)
class LeaderChange:
    node: str
    term: int
    at: float
    previous: str | None
    vacant: float
    #: Seconds from the SIGKILL of the previous leader to this takeover (None: it was not killed).
    after_death: float | None = None


def stamp(line: str) -> float | None:
    """The wall time of a hub log line (``%(asctime)s``, local time, milliseconds)."""
    mt = _STAMP.match(line)
    if mt is None:
        return None
    return time.mktime(time.strptime(mt.group(1), "%Y-%m-%d %H:%M:%S")) + int(mt.group(2)) / 1000


def job_runs(logs: Mapping[str, str], kills: Mapping[str, Sequence[float]], end: float) -> list[JobRun]:
    """The singleton job runs in ``logs`` (node → its log's text, every life of it);
    ``kills``: node → wall times it was SIGKILLed; ``end``: when the run stopped the nodes."""
    out: list[JobRun] = []
    for node, text in logs.items():
        open_runs: dict[str, tuple[float, int | None]] = {}
        for line in text.splitlines():
            if line.startswith("=== chaos: start "):  # a new life: what the last one left open was killed
                for job, (start, term) in open_runs.items():
                    out.append(_cut(job, node, term, start, kills=kills.get(node, ()), end=end))
                open_runs.clear()
                continue
            mt = JOB_LINE.search(line)
            if mt is None or mt.group("node") != node:
                continue
            term = None if mt.group("term") == "None" else int(mt.group("term"))
            at = float(mt.group("at"))
            if mt.group("what") == "started":
                open_runs[mt.group("job")] = (at, term)
            elif (begun := open_runs.pop(mt.group("job"), None)) is not None:
                out.append(JobRun(mt.group("job"), node, begun[1], begun[0], at, mt.group("what")))
        for job, (start, term) in open_runs.items():
            out.append(_cut(job, node, term, start, kills=kills.get(node, ()), end=end))
    return sorted(out, key=lambda r: (r.job, r.start))


def _cut(job: str, node: str, term: int | None, start: float, *, kills: Sequence[float], end: float) -> JobRun:
    killed = [k for k in kills if k >= start]
    return JobRun(job, node, term, start, min(killed) if killed else end, "killed" if killed else "running")


def overlaps(runs: Sequence[JobRun]) -> list[dict[str, Any]]:
    """Pairs of runs of one job on two different nodes at once."""
    found = []
    by_job: dict[str, list[JobRun]] = {}
    for r in runs:
        by_job.setdefault(r.job, []).append(r)
    for lst in by_job.values():
        lst.sort(key=lambda r: r.start)
        for i, a in enumerate(lst):
            for b in lst[i + 1:]:
                if b.start >= a.end:
                    break
                if b.node != a.node:
                    found.append({"job": a.job, "a": asdict(a), "b": asdict(b),
                                  "seconds": round(min(a.end, b.end) - b.start, 3)})
    return found


def leader_changes(logs: Mapping[str, str], kills: Mapping[str, Sequence[float]]) -> list[LeaderChange]:
    """Every takeover the nodes logged, in order, with the seconds since the previous
    leader's death when it was SIGKILLed (its first kill after it took the lease: a
    restarted process of that name is not the leader, even while the lease still names it)."""
    gains: list[LeaderChange] = []
    for text in logs.values():
        for line in text.splitlines():
            mt = _GAIN.search(line)
            at = stamp(line) if mt else None
            if mt is None or at is None:
                continue
            gains.append(LeaderChange(mt.group("node"), int(mt.group("term")), at, mt.group("prev"),
                                      float(mt.group("vacant"))))
    gains.sort(key=lambda g: g.term)
    out: list[LeaderChange] = []
    for i, g in enumerate(gains):
        prev_at = gains[i - 1].at if i else 0.0
        deaths = [k for k in kills.get(g.previous or "", ()) if prev_at <= k <= g.at]
        after = round(g.at - deaths[0], 3) if deaths and g.previous != g.node else None
        out.append(LeaderChange(g.node, g.term, g.at, g.previous, g.vacant, after))
    return out
