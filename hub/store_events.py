"""Events, site state, door states and occupancy in the hub's SQLite store.

Each site numbers its events 1, 2, 3, … without holes (PROTOCOL.md §4), so the hub can
prove that nothing is missing. Per site the store keeps ``max_seq`` (the highest seq
stored), ``gaps`` (the missing ranges below it) and ``acked_upto`` (every seq up to it is
stored: the value of ``event/ack``). ``store_events`` updates the three from the batch
alone, in the transaction that stores the events: a seq ≤ ``acked_upto`` is a duplicate
by definition, a seq above ``max_seq`` extends it (opening a gap if it skips), a seq
inside a gap fills it; nothing rescans the events table. Because the bookkeeping, not the
table, decides what is a duplicate, events purged by retention are not stored again when a
site resends them.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from wire import messages as m

from .store_schema import SqliteBase
from .store_types import EventsStored, EventTuple, SiteState, SiteStateChanges, StoredEvent

log = logging.getLogger(__name__)
# SQL text is only ever built from constant column lists and "?" placeholders; every
# value travels as a parameter (hence the noqa: S608 below).

Gaps = list[list[int]]  # sorted, disjoint, inclusive [first, last] ranges

_STATE_COLS = ("online", "since", "last_seen", "boot", "software", "cache_version", "cache_expires_at",
               "clock_synced", "outbox_pending", "lockdown", "status", "acked_upto", "max_seq", "gaps")
_BOOL_COLS = frozenset({"online", "clock_synced", "lockdown"})
_CHANGEABLE = frozenset(SiteStateChanges.__annotations__)


def _in_gap(gaps: Gaps, seq: int) -> int:
    """Index of the gap holding ``seq``, or -1."""
    i = bisect.bisect_right(gaps, seq, key=lambda g: g[0]) - 1
    return i if i >= 0 and gaps[i][0] <= seq <= gaps[i][1] else -1


def advance(gaps: Gaps, max_seq: int, seqs: Sequence[int]) -> tuple[Gaps, int]:
    """Account for newly stored ``seqs`` (ascending, each above max_seq or in a gap)."""
    for seq in seqs:
        if seq > max_seq:
            if seq > max_seq + 1:
                gaps.append([max_seq + 1, seq - 1])
            max_seq = seq
            continue
        i = _in_gap(gaps, seq)
        if i < 0:
            continue
        first, last = gaps[i]
        pieces = [p for p in ([first, seq - 1], [seq + 1, last]) if p[0] <= p[1]]
        gaps[i : i + 1] = pieces
    return gaps, max_seq


def _state(site_id: str, row: Sequence[Any]) -> SiteState:
    v = dict(zip(_STATE_COLS, row, strict=True))
    return SiteState(
        site_id=site_id,
        online=bool(v["online"]), since=v["since"], last_seen=v["last_seen"], boot=v["boot"],
        software=v["software"], cache_version=v["cache_version"], cache_expires_at=v["cache_expires_at"],
        clock_synced=bool(v["clock_synced"]), outbox_pending=v["outbox_pending"], lockdown=bool(v["lockdown"]),
        status=v["status"], acked_upto=v["acked_upto"], max_seq=v["max_seq"],
        gaps=tuple((a, b) for a, b in json.loads(v["gaps"])),
    )


class EventsMixin(SqliteBase):
    """The event log and what sites report about themselves."""

    def store_events(
        self, site_id: str, events: Sequence[EventTuple], *, received_at: float | None = None
    ) -> EventsStored:
        """Store a batch of a site's events (seq, id, type, ts, payload JSON) in one
        transaction; each (site, seq) is stored once, whatever is replayed and in which
        order. Return how many were new, the new ``acked_upto`` and the gaps."""
        now = time.time() if received_at is None else received_at
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO site_state (site_id) VALUES (?)", (site_id,))
            acked, max_seq, gaps_json = c.execute(
                "SELECT acked_upto, max_seq, gaps FROM site_state WHERE site_id = ?", (site_id,)
            ).fetchone()
            gaps: Gaps = json.loads(gaps_json)
            fresh: dict[int, EventTuple] = {}
            for ev in events:
                seq = ev[0]
                if seq > acked and seq not in fresh and (seq > max_seq or _in_gap(gaps, seq) >= 0):
                    fresh[seq] = ev
            seqs = sorted(fresh)
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO events (site_id, seq, id, type, ts, received_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(site_id, s, fresh[s][1], fresh[s][2], fresh[s][3], now, fresh[s][4]) for s in seqs],
            )
            new = c.total_changes - before
            gaps, max_seq = advance(gaps, max_seq, seqs)
            acked = gaps[0][0] - 1 if gaps else max_seq
            c.execute(
                "UPDATE site_state SET acked_upto = ?, max_seq = ?, gaps = ?, last_seen = ? WHERE site_id = ?",
                (acked, max_seq, json.dumps(gaps), now, site_id),
            )
        if gaps and new:
            log.info("site %s: events missing in %d ranges, first %d-%d", site_id, len(gaps), *gaps[0])
        return EventsStored(new=new, acked_upto=acked, gaps=tuple((a, b) for a, b in gaps))

    def events(
        self, *, site_id: str | None = None, type: str | None = None,
        since: float | None = None, until: float | None = None, limit: int = 100,
    ) -> list[StoredEvent]:
        """Events, newest first (by the site's ``ts``), filtered by site, type and
        ``since`` ≤ ts < ``until``."""
        where: list[str] = []
        params: list[Any] = []
        for cond, value in (("site_id = ?", site_id), ("type = ?", type), ("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(cond)
                params.append(value)
        sql = "SELECT site_id, seq, id, type, ts, received_at, payload FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, seq DESC LIMIT ?"
        params.append(max(0, limit))
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [StoredEvent(site_id=r[0], seq=r[1], id=r[2], type=r[3], ts=r[4], received_at=r[5], payload=r[6])
                for r in rows]

    def purge_events(self, received_before: float) -> int:
        """Delete events the hub received before ``received_before`` (retention), in
        batches so that writers are not locked out for long. Return how many went."""
        total = 0
        while True:
            with self._write() as c:
                n = c.execute(
                    "DELETE FROM events WHERE rowid IN "
                    "(SELECT rowid FROM events WHERE received_at < ? LIMIT 10000)", (received_before,)
                ).rowcount
            total += n
            if n < 10000:
                break
        if total:
            log.info("purged %d events received before %.0f", total, received_before)
        return total

    # --- site state --------------------------------------------------------------------------

    def site_state(self, site_id: str) -> SiteState | None:
        with self._read() as c:
            row = c.execute(f"SELECT {', '.join(_STATE_COLS)} FROM site_state WHERE site_id = ?",  # noqa: S608
                            (site_id,)).fetchone()
        return _state(site_id, row) if row else None

    def site_states(self) -> list[SiteState]:
        with self._read() as c:
            sql = f"SELECT site_id, {', '.join(_STATE_COLS)} FROM site_state ORDER BY site_id"  # noqa: S608
            rows = c.execute(sql).fetchall()
        return [_state(r[0], r[1:]) for r in rows]

    def update_site_state(self, site_id: str, changes: SiteStateChanges) -> SiteState:
        """Set some fields of a site's state (created if new); return the new state."""
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"not a site state field: {', '.join(sorted(unknown))}")
        given: dict[str, Any] = dict(changes)
        cols = sorted(given)
        values = [int(given[k]) if k in _BOOL_COLS else given[k] for k in cols]
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO site_state (site_id) VALUES (?)", (site_id,))
            if cols:
                sql = f"UPDATE site_state SET {', '.join(f'{k} = ?' for k in cols)} WHERE site_id = ?"  # noqa: S608
                c.execute(sql, (*values, site_id))
            row = c.execute(f"SELECT {', '.join(_STATE_COLS)} FROM site_state WHERE site_id = ?",  # noqa: S608
                            (site_id,)).fetchone()
        return _state(site_id, row)

    def record_status(self, site_id: str, status: m.Status, received_at: float) -> SiteState:
        """Apply a retained Status (or the Last Will). ``since`` moves only when the site
        goes online or offline; an offline status keeps the last known details."""
        with self._write():
            old = self.site_state(site_id)
            online = status.state == "online"
            changes: SiteStateChanges = {
                "online": online, "last_seen": received_at, "status": m.encode(status).decode("utf-8"),
            }
            if old is None or old.online != online or old.since is None:
                changes["since"] = received_at
            if online:
                changes["boot"] = status.boot
                changes["software"] = status.software
                changes["cache_version"] = status.cache_version
                changes["cache_expires_at"] = status.cache_expires_at
                changes["clock_synced"] = status.clock_synced
                changes["outbox_pending"] = status.outbox_pending
                changes["lockdown"] = status.lockdown
            return self.update_site_state(site_id, changes)

    # --- retained door states and occupancy ---------------------------------------------------

    def upsert_door_state(self, site_id: str, door: str, payload: str, ts: float) -> bool:
        """Keep a door's latest state (JSON); an older ``ts`` than the stored one is
        ignored (a replayed retained message). Return whether it was stored."""
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO door_states (site_id, door, payload, ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site_id, door) DO UPDATE SET payload = excluded.payload, ts = excluded.ts "
                "WHERE excluded.ts >= door_states.ts",
                (site_id, door, payload, ts),
            )
            return cur.rowcount > 0

    def door_states(self, site_id: str) -> dict[str, tuple[str, float]]:
        """Door → (state JSON, ts)."""
        with self._read() as c:
            rows = c.execute("SELECT door, payload, ts FROM door_states WHERE site_id = ? ORDER BY door",
                             (site_id,)).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def upsert_occupancy(self, site_id: str, payload: str, ts: float) -> bool:
        """Keep a site's latest occupancy report (JSON); older ones are ignored."""
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO occupancy (site_id, payload, ts) VALUES (?, ?, ?) "
                "ON CONFLICT (site_id) DO UPDATE SET payload = excluded.payload, ts = excluded.ts "
                "WHERE excluded.ts >= occupancy.ts",
                (site_id, payload, ts),
            )
            return cur.rowcount > 0

    def occupancy(self, site_id: str) -> tuple[str, float] | None:
        """(occupancy JSON, ts) or None."""
        with self._read() as c:
            row = c.execute("SELECT payload, ts FROM occupancy WHERE site_id = ?", (site_id,)).fetchone()
        return (row[0], row[1]) if row else None
