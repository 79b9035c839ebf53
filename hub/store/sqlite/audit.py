"""The audit trail and the ordered pages the CSV exports read, in the hub's SQLite store.

``record_audit`` appends one row per act (``hub.core.audit``); ``audit_log`` and
``events_after`` read in a fixed order, a page at a time after a key (the last row of the
previous page), so an export of any size never holds more than a page; ``purge_audit``
is retention's. Portable SQL only: row-value comparison for the keys, ``RETURNING id``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..audit import OUTCOMES, AuditEntry, AuditKey, AuditRow, EventKey
from ..types import StoredEvent
from .base import SqliteBase

log = logging.getLogger(__name__)
# SQL text is only ever built from constant column lists and "?" placeholders; every
# value travels as a parameter (hence the noqa: S608 below).

_AUDIT_FIELDS = ("at", "who", "via", "act", "outcome", "site_id", "door", "member_id", "detail", "reason")
_AUDIT_COLS = "id, " + ", ".join(_AUDIT_FIELDS)
_EVENT_COLS = "site_id, seq, id, type, ts, received_at, payload, stream"


def _audit(row: sqlite3.Row) -> AuditRow:
    return AuditRow(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


def _event(r: sqlite3.Row) -> StoredEvent:
    return StoredEvent(site_id=r["site_id"], seq=r["seq"], id=r["id"], type=r["type"], ts=r["ts"],
                       received_at=r["received_at"], payload=r["payload"], stream=r["stream"])


class AuditMixin(SqliteBase):
    """The audit trail; events in export order."""

    def record_audit(self, entry: AuditEntry) -> int:
        """Append one act to the audit trail; its id. ValueError for an unknown outcome
        or an empty ``who``/``act`` (nothing is stored)."""
        if entry.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {entry.outcome!r} is not one of {', '.join(OUTCOMES)}")
        if not entry.who or not entry.act or not entry.via:
            raise ValueError("an audit entry needs who, via and act")
        values = [getattr(entry, f) for f in _AUDIT_FIELDS]
        with self._write() as c:
            row = c.execute(f"INSERT INTO audit ({', '.join(_AUDIT_FIELDS)}) "  # noqa: S608
                            f"VALUES ({', '.join('?' * len(_AUDIT_FIELDS))}) RETURNING id", values).fetchone()
        return int(row["id"])

    def audit_log(self, *, site_id: str | None = None, since: float | None = None, until: float | None = None,
                  after: AuditKey | None = None, limit: int = 1000, newest: bool = False) -> list[AuditRow]:
        """Audit rows with ``since`` ≤ at < ``until`` (of one site, or all), oldest first
        (by ``at``, then id): the first ``limit`` after the key ``after``, or with
        ``newest`` the last ``limit`` (``after`` must then be None)."""
        if newest and after is not None:
            raise ValueError("audit_log: newest and after exclude each other")
        where: list[str] = []
        params: list[Any] = []
        for cond, value in (("site_id = ?", site_id), ("at >= ?", since), ("at < ?", until)):
            if value is not None:
                where.append(cond)
                params.append(value)
        if after is not None:
            where.append("(at, id) > (?, ?)")
            params += [after[0], after[1]]
        sql = f"SELECT {_AUDIT_COLS} FROM audit"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?" if newest else " ORDER BY at, id LIMIT ?"
        params.append(max(0, limit))
        with self._read() as c:
            rows = [_audit(r) for r in c.execute(sql, params).fetchall()]
        return rows[::-1] if newest else rows

    def purge_audit(self, before: float) -> int:
        """Delete audit rows recorded before ``before`` (retention); how many went."""
        with self._write() as c:
            n = c.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount
        if n:
            log.info("purged %d audit rows from before %.0f", n, before)
        return int(n)

    def events_after(self, *, site_ids: Sequence[str] | None = None, type: str | None = None,
                     since: float | None = None, until: float | None = None, after: EventKey | None = None,
                     limit: int = 1000) -> list[StoredEvent]:
        """Events with ``since`` ≤ ts < ``until`` of ``site_ids`` (None: every site; empty:
        none) and ``type``, oldest first by (ts, site, stream, seq): the first ``limit``
        after the key ``after`` (the last event of the previous page)."""
        if site_ids is not None and not site_ids:
            return []
        where: list[str] = []
        params: list[Any] = []
        if site_ids is not None:
            where.append(f"site_id IN ({', '.join('?' * len(site_ids))})")
            params += list(site_ids)
        for cond, value in (("type = ?", type), ("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(cond)
                params.append(value)
        if after is not None:
            where.append("(ts, site_id, stream, seq) > (?, ?, ?, ?)")
            params += list(after)
        sql = f"SELECT {_EVENT_COLS} FROM events"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts, site_id, stream, seq LIMIT ?"
        params.append(max(0, limit))
        with self._read() as c:
            return [_event(r) for r in c.execute(sql, params).fetchall()]
