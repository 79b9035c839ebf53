"""Events emitted against events stored: the chaos run's proof that nothing was lost.

A site numbers its events 1, 2, 3 ... in a stream (PROTOCOL.md §4); a reinstalled site
starts a new stream at 1. Events carry the stream's id in ``stream`` (older sites and
hubs: no such field, one stream per site). ``check_sequences`` compares, per site:

- every event id in the site's outbox (and in the outboxes it had before a reinstall,
  as far as the hub had acknowledged them) against the ids the hub stored;
- the current stream: stored exactly once each, 1..last, acknowledged at the site up to
  its last (and, without streams, the hub's own ``site_state`` agreeing).

Reads only (read-only connections beside the running parts; the hub's store on SQLite
or PostgreSQL: testkit.chaos_db).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from edge.outbox import Outbox

from .chaos_db import HubDb, ro


def _ro(path: HubDb) -> Any:
    return ro(path)


def outbox_state(data_dir: Path, site: str) -> tuple[int, int]:
    """(last seq, acked_upto) of a site's outbox, read beside the running agent."""
    path = data_dir / "outbox.db"
    if not path.exists():
        return 0, 0
    ob = Outbox(path, site, "chaos", read_only=True)
    try:
        return ob.last_seq, ob.acked_upto
    finally:
        ob.close()


def outbox_events(path: Path) -> tuple[dict[int, str], str | None]:
    """(seq → event id, the stream) of the outbox file ``path``; ({}, None) if none."""
    if not path.exists():
        return {}, None
    with closing(_ro(path)) as conn:
        try:
            rows = conn.execute("SELECT seq, id FROM events").fetchall()
            first = conn.execute("SELECT data FROM events ORDER BY seq LIMIT 1").fetchone()
        except sqlite3.OperationalError:  # the agent is creating the file right now
            return {}, None
    stream = json.loads(bytes(first[0])).get("stream") if first else None
    return {int(s): str(i) for s, i in rows}, stream


def hub_site_state(hub_db: HubDb, site: str) -> dict[str, Any]:
    with closing(_ro(hub_db)) as conn:
        st = conn.execute("SELECT acked_upto, max_seq, gaps FROM site_state WHERE site_id = ?", (site,)).fetchone()
        ev = conn.execute("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events WHERE site_id = ?",
                          (site,)).fetchone()
        cv = conn.execute("SELECT version FROM cache_sites WHERE site_id = ?", (site,)).fetchone()
    acked, max_seq, gaps = st if st else (0, 0, "[]")
    return {"acked_upto": acked, "max_seq": max_seq, "gaps": json.loads(gaps), "stored": ev[0],
            "distinct": ev[1], "min_seq": ev[2], "max_stored": ev[3], "hub_cache_version": cv[0] if cv else None}


def hub_streams(hub_db: HubDb, site: str) -> tuple[dict[str | None, dict[str, Any]], set[str]]:
    """Per stream (None: events without the field) what the hub stored of ``site``, and
    the ids of all its stored events."""
    with closing(_ro(hub_db)) as conn:
        rows = conn.execute("SELECT json_extract(payload, '$.stream'), count(*), count(DISTINCT seq), min(seq), "
                            "max(seq) FROM events WHERE site_id = ? GROUP BY 1", (site,)).fetchall()
        ids = {r[0] for r in conn.execute("SELECT id FROM events WHERE site_id = ?", (site,))}
    streams = {s: {"stored": n, "distinct": d, "min_seq": lo, "max_stored": hi} for s, n, d, lo, hi in rows}
    return streams, ids


def check_sequences(hub_db: HubDb, data_dirs: dict[str, Path],
                    before: Mapping[str, Iterable[tuple[Path, int]]] | None = None) -> dict[str, dict[str, Any]]:
    """Per site: emitted (the outbox's last seq) against stored at the hub; ``ok`` when
    every event of the current stream, 1..last, is stored exactly once and acknowledged,
    and no event id the site holds (``before``: site → (an outbox it had before a
    reinstall, how far the hub had acknowledged it)) is missing at the hub."""
    out: dict[str, dict[str, Any]] = {}
    for site, data in sorted(data_dirs.items()):
        last, acked_at_site = outbox_state(data, site)
        held, stream = outbox_events(data / "outbox.db")
        streams, stored_ids = hub_streams(hub_db, site)
        hub = hub_site_state(hub_db, site)
        cur = streams.get(stream, {"stored": 0, "distinct": 0, "min_seq": None, "max_stored": None})
        missing = sorted(seq for seq, eid in held.items() if eid not in stored_ids)
        missing_before = 0
        for path, acked in (before or {}).get(site, ()):
            old, _ = outbox_events(path)
            missing_before += sum(1 for seq, eid in old.items() if seq <= acked and eid not in stored_ids)
        ok = (cur["stored"] == cur["distinct"] == last == acked_at_site and not missing and not missing_before
              and (last == 0 or (cur["min_seq"] == 1 and cur["max_stored"] == last)))
        if stream is None and len(streams) <= 1:  # no streams: the hub's own state must agree
            ok = ok and hub["max_seq"] == hub["acked_upto"] == last and not hub["gaps"]
        dup = sum(v["stored"] - v["distinct"] for v in streams.values())
        gaps = sum(v["max_stored"] - v["distinct"] for v in streams.values() if v["max_stored"] is not None)
        out[site] = {"emitted": last, "acked_at_site": acked_at_site, **hub, "stream": stream,
                     "streams": len(streams), "stream_stored": cur["stored"], "stream_distinct": cur["distinct"],
                     "missing": len(missing) + missing_before, "missing_seqs": missing[:20],
                     "missing_before_reinstall": missing_before, "stream_duplicates": dup, "stream_gaps": gaps,
                     "ok": ok}
    return out
