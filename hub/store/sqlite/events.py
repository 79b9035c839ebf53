"""Site state, door states and occupancy in the hub's SQLite store; the events, per site
and stream, are in ``streams`` (this mixin includes it).

A site's state carries its current event stream's ``acked_upto``, ``max_seq`` and
``gaps`` (kept by ``streams.StreamsMixin.store_batch``), and the counts of events of
unknown type and of quarantined messages.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from wire import messages as m

from ..types import SiteState, SiteStateChanges
from .streams import StreamsMixin

log = logging.getLogger(__name__)
# SQL text is only ever built from constant column lists and "?" placeholders; every
# value travels as a parameter (hence the noqa: S608 below).

_STATE_COLS = ("online", "since", "last_seen", "boot", "software", "cache_version", "cache_expires_at",
               "clock_synced", "outbox_pending", "lockdown", "status", "acked_upto", "max_seq", "gaps", "stream",
               "unknown_types", "quarantined")
_BOOL_COLS = frozenset({"online", "clock_synced", "lockdown"})
_CHANGEABLE = frozenset(SiteStateChanges.__annotations__)


def _state(site_id: str, v: sqlite3.Row) -> SiteState:
    return SiteState(
        site_id=site_id,
        online=bool(v["online"]), since=v["since"], last_seen=v["last_seen"], boot=v["boot"],
        software=v["software"], cache_version=v["cache_version"], cache_expires_at=v["cache_expires_at"],
        clock_synced=bool(v["clock_synced"]), outbox_pending=v["outbox_pending"], lockdown=bool(v["lockdown"]),
        status=v["status"], acked_upto=v["acked_upto"], max_seq=v["max_seq"],
        gaps=tuple((a, b) for a, b in json.loads(v["gaps"])),
        stream=v["stream"], unknown_types=v["unknown_types"], quarantined=v["quarantined"],
    )


class EventsMixin(StreamsMixin):
    """The event log and what sites report about themselves."""

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
        return [_state(r["site_id"], r) for r in rows]

    def update_site_state(self, site_id: str, changes: SiteStateChanges) -> SiteState:
        """Set some fields of a site's state (created if new); return the new state."""
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"not a site state field: {', '.join(sorted(unknown))}")
        given: dict[str, Any] = dict(changes)
        cols = sorted(given)
        values = [int(given[k]) if k in _BOOL_COLS else given[k] for k in cols]
        with self._write() as c:
            c.execute("INSERT INTO site_state (site_id) VALUES (?) ON CONFLICT (site_id) DO NOTHING", (site_id,))
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
        return {r["door"]: (r["payload"], r["ts"]) for r in rows}

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
        return (row["payload"], row["ts"]) if row else None
