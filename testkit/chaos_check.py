"""What the chaos run proves, checked from the parts' own files after everything settled:

- ``CacheLogRecorder`` copies every cache version the hub issues (its change log) into the
  run's own database while the run goes, so that the hub's log pruning cannot hide one;
- ``check_sequences`` (testkit.chaos_events): per site, the events emitted against what
  the hub stored, per stream;
- ``check_decisions``: every access.granted / access.denied recomputed with
  ``edge.decide.decide`` against the entries of the cache version the event names, at the
  event's own time and clock verdict;
- ``ProcSampler``: resident memory and open files of the long-lived processes over time;
- ``tracebacks``: Traceback lines per log file.

Reads only: the hub's and the sites' SQLite files are opened read-only (WAL readers).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from edge.cache import CacheStore
from edge.decide import decide
from wire import messages as m

from . import chaos_db
from .chaos_db import DB_ERRORS, HubDb

_entries = msgspec.json.Decoder(list[m.Entry])
_ids = msgspec.json.Decoder(list[str])


def ro(path: HubDb) -> Any:
    """A read-only connection (a SQLite file through the WAL, waiting for writers; or the
    hub's PostgreSQL store: testkit.chaos_db)."""
    return chaos_db.ro(path)


@dataclass(frozen=True)
class LogRow:
    site: str
    version: int
    base_version: int
    built_at: int
    n_entries: int
    added: str
    changed: str
    removed: str


class CacheLogRecorder:
    """Copies new rows of the hub's ``cache_versions`` into ``out`` (the run's own SQLite
    file) every ``interval`` seconds and on ``poll()``."""

    def __init__(self, hub_db: HubDb, out: Path, interval: float = 2.0) -> None:
        self.hub_db = hub_db
        self.interval = interval
        self.errors = 0
        self._out = sqlite3.connect(out, check_same_thread=False)
        self._out.execute("CREATE TABLE IF NOT EXISTS versions (site TEXT, version INTEGER, base_version INTEGER, "
                          "built_at INTEGER, n_entries INTEGER, added TEXT, changed TEXT, removed TEXT, "
                          "PRIMARY KEY (site, version))")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> int:
        if not chaos_db.exists(self.hub_db):
            return 0
        with self._lock:
            known = dict(self._out.execute("SELECT site, max(version) FROM versions GROUP BY site").fetchall())
            try:
                conn = ro(self.hub_db)
                try:
                    rows = conn.execute("SELECT site_id, version, base_version, built_at, n_entries, added, changed, "
                                        "removed FROM cache_versions ORDER BY site_id, version").fetchall()
                finally:
                    conn.close()
            except DB_ERRORS:
                self.errors += 1  # the hub is being killed or created right now: next time
                return 0
            new = [r for r in rows if r[1] > known.get(r[0], 0)]
            with self._out:
                self._out.executemany("INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", new)
            return len(new)

    def rows(self, site: str) -> list[LogRow]:
        with self._lock:
            return [LogRow(*r) for r in self._out.execute(
                "SELECT site, version, base_version, built_at, n_entries, added, changed, removed FROM versions "
                "WHERE site = ? ORDER BY version", (site,))]

    def n_entries(self, site: str, version: int) -> int | None:
        with self._lock:
            row = self._out.execute("SELECT n_entries FROM versions WHERE site = ? AND version = ?",
                                    (site, version)).fetchone()
        return None if row is None else int(row[0])

    def versions(self, site: str) -> set[int]:
        with self._lock:
            return {r[0] for r in self._out.execute("SELECT version FROM versions WHERE site = ?", (site,))}

    def close(self) -> None:
        self._out.close()


# --- caches --------------------------------------------------------------------------------------


def site_cache_version(data_dir: Path) -> tuple[int | None, int]:
    """(version, entry count) of a site's applied cache."""
    path = data_dir / "cache.db"
    if not path.exists():
        return None, 0
    with CacheStore(path, read_only=True) as c:
        meta = c.meta()
    return meta.version, meta.entry_count



# --- decisions ---------------------------------------------------------------------------------------


@dataclass
class DecisionCheck:
    checked: int = 0
    granted: int = 0
    denied: int = 0
    skipped: int = 0
    unverifiable: int = 0
    mismatches: int = 0
    clock_violations: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    chain_breaks: list[str] = field(default_factory=list)
    versions_folded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "granted": self.granted, "denied": self.denied, "skipped": self.skipped,
                "unverifiable": self.unverifiable, "mismatches": self.mismatches,
                "clock_violations": self.clock_violations,
                "by_reason": dict(self.by_reason), "examples": self.examples[:10],
                "chain_breaks": self.chain_breaks, "versions_folded": self.versions_folded}


def _index(entries: dict[str, m.Entry]) -> dict[str, list[m.Entry]]:
    idx: dict[str, list[m.Entry]] = defaultdict(list)
    for eid in sorted(entries):  # the site's lookup orders by id
        e = entries[eid]
        idx[e.cred].append(e)
    return idx


def _verify(res: DecisionCheck, site: str, ev: dict[str, Any], idx: dict[str, list[m.Entry]], *,
            expires: int | None, issued: int | None, rooms: dict[str, str | None]) -> None:
    if ev["reason"] in ("exit_button", "command"):
        res.skipped += 1
        return
    granted = ev["type"] == "access.granted"
    res.checked += 1
    res.granted += granted
    res.denied += not granted
    res.by_reason[ev["reason"]] += 1
    d = decide(idx.get(ev.get("cred") or "", []), door=ev["door"], now=ev["ts"], cache_expires_at=expires,
               clock_trusted=ev["clock_synced"], mode="normal", rate_limited=False, door_room=rooms.get(ev["door"]))
    ok = d.granted == granted and d.reason == ev["reason"]
    if ok and granted:
        ok = d.entry is not None and (d.entry.who, d.entry.ref) == (ev.get("who"), ev.get("ref"))
    if ok and ev["clock_synced"] and issued is not None and ev["ts"] < issued:
        # The verdict itself, checked apart: a clock behind the cache's own signed time is
        # never trusted (the site's newest signed time is at least that).
        ok = False
        res.clock_violations += 1
    if not ok:
        res.mismatches += 1
        res.examples.append({"site": site, "seq": ev["seq"], "event": ev["type"], "reason": ev["reason"],
                             "recomputed": d.reason, "cache_version": ev.get("cache_version")})


def check_decisions(events: dict[str, list[dict[str, Any]]], log: Callable[[str], list[LogRow]], *,
                    valid_seconds: int, door_rooms: dict[str, dict[str, str | None]]) -> DecisionCheck:
    """Recompute every access event of every site against the entries of the cache
    version it names (folded from the hub's change log from version 0)."""
    res = DecisionCheck()
    missing = object()
    for site, evs in sorted(events.items()):
        rooms = door_rooms.get(site, {})
        by_version: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for ev in evs:
            by_version[ev.get("cache_version", missing)].append(ev)
        for ev in by_version.pop(None, []):
            _verify(res, site, ev, {}, expires=None, issued=None, rooms=rooms)
        entries: dict[str, m.Entry] = {}
        prev, chain_ok = 0, True
        for row in log(site):
            if row.base_version != prev:
                chain_ok = False
                res.chain_breaks.append(f"{site}: version {row.version} is based on {row.base_version}, not {prev}")
            for e in _entries.decode(row.added):
                entries[e.id] = e
            for e in _entries.decode(row.changed):
                entries[e.id] = e
            for i in _ids.decode(row.removed):
                entries.pop(i, None)
            if chain_ok and len(entries) != row.n_entries:
                chain_ok = False
                res.chain_breaks.append(f"{site}: version {row.version} folds to {len(entries)} entries, "
                                        f"the hub counted {row.n_entries}")
            prev = row.version
            res.versions_folded += 1
            evs_v = by_version.pop(row.version, [])
            if not evs_v:
                continue
            if not chain_ok:
                res.unverifiable += len(evs_v)
                continue
            idx = _index(entries)
            for ev in evs_v:
                _verify(res, site, ev, idx, expires=row.built_at + valid_seconds, issued=row.built_at, rooms=rooms)
        res.unverifiable += sum(len(v) for v in by_version.values())
    return res


def access_events(hub_db: HubDb) -> dict[str, list[dict[str, Any]]]:
    conn = ro(hub_db)
    try:
        rows = conn.execute("SELECT site_id, payload FROM events WHERE type IN ('access.granted', 'access.denied') "
                            "ORDER BY site_id, seq").fetchall()
    finally:
        conn.close()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for site, payload in rows:
        out[site].append(json.loads(payload))
    return out


def event_types(hub_db: HubDb) -> dict[str, Counter[str]]:
    conn = ro(hub_db)
    try:
        rows = conn.execute("SELECT site_id, type, count(*) FROM events GROUP BY site_id, type").fetchall()
    finally:
        conn.close()
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for site, type_, n in rows:
        out[site][type_] = n
    return out


def applied_versions(hub_db: HubDb) -> dict[str, list[int]]:
    """Per site, the versions its cache.applied events report."""
    conn = ro(hub_db)
    try:
        rows = conn.execute("SELECT site_id, payload FROM events WHERE type = 'cache.applied'").fetchall()
    finally:
        conn.close()
    out: dict[str, list[int]] = defaultdict(list)
    for site, payload in rows:
        v = json.loads(payload).get("version")
        if v is not None:
            out[site].append(int(v))
    return out


# --- processes ------------------------------------------------------------------------------------------


def proc_sample(pid: int) -> tuple[int, int] | None:
    """(VmRSS in KiB, open file descriptors) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, StopIteration):
        return None
    return rss, fds


@dataclass
class Series:
    label: str
    pid: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss KiB, fds)


class ProcSampler:
    """Samples every ``interval`` seconds the processes ``pids()`` names (label → pid); a new
    pid under a label (a restart) starts a new series. ``checkpoint(name)`` takes a sample
    the verdict compares: call it at moments that are alike (every site connected, no fault
    in progress), since open files follow the connections of the moment."""

    def __init__(self, pids: Callable[[], dict[str, int | None]], interval: float = 5.0) -> None:
        self.pids = pids
        self.interval = interval
        self.series: dict[str, list[Series]] = defaultdict(list)
        self.checkpoints: list[tuple[str, dict[str, tuple[int, float, int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> dict[str, tuple[int, float, int, int]]:
        now = time.monotonic()
        taken: dict[str, tuple[int, float, int, int]] = {}
        for label, pid in self.pids().items():
            if pid is None:
                continue
            s = proc_sample(pid)
            if s is None:
                continue
            lst = self.series[label]
            if not lst or lst[-1].pid != pid:
                lst.append(Series(label, pid))
            lst[-1].samples.append((now, *s))
            taken[label] = (pid, now, *s)
        return taken

    def checkpoint(self, name: str) -> None:
        self.checkpoints.append((name, self.sample()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def verdict(self, label: str, *, min_span: float, rss_tol_kib: int, rss_tol_frac: float,
                fd_tol: int, since: str | None = None) -> dict[str, Any] | None:
        """The first checkpoint of the process's last life (``since``: from the checkpoint
        of that name on) against the last checkpoint."""
        lives = self.series.get(label)
        if not lives:
            return None
        life = lives[-1]
        names = [name for name, _ in self.checkpoints]
        skip = names.index(since) if since in names else 0
        points = [(name, got[label]) for name, got in self.checkpoints[skip:]
                  if label in got and got[label][0] == life.pid]
        if len(points) < 2 or points[-1][1][1] - points[0][1][1] < min_span:
            return {"label": label, "lives": len(lives), "judged": False,
                    "why": "its last life spans too few checkpoints to judge"}
        (first, (_, te, rss_e, fd_e)), (last, (_, tl, rss_l, fd_l)) = points[0], points[-1]
        rss_tol = max(rss_tol_kib, int(rss_e * rss_tol_frac))
        ok = rss_l - rss_e <= rss_tol and fd_l - fd_e <= fd_tol
        during = [s for s in life.samples if te <= s[0] <= tl]
        return {"label": label, "lives": len(lives), "judged": True, "from": first, "to": last,
                "span_s": round(tl - te), "rss_early_kib": rss_e, "rss_late_kib": rss_l,
                "rss_max_kib": max(s[1] for s in during), "fds_early": fd_e, "fds_late": fd_l,
                "fds_max": max(s[2] for s in during), "rss_tolerance_kib": rss_tol, "fd_tolerance": fd_tol,
                "flat": ok}


# --- logs -------------------------------------------------------------------------------------------------


def tracebacks(files: Iterable[Path]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in files:
        with contextlib.suppress(OSError):
            n = p.read_bytes().count(b"Traceback (most recent call last)")
            if n:
                out[str(p)] = n
    return out


def log_lines(path: Path, needle: str) -> list[str]:
    try:
        return [ln for ln in path.read_text(errors="replace").splitlines() if needle in ln]
    except OSError:
        return []
