"""Since when an alert's condition holds, in the hub's store (table ``alert_conditions``).

The slow alerts (``clock_untrusted``, ``cache_stale``: hub/alerts/conditions.py) open once
their condition has held for a while. Its start is kept here, one row per (site, kind)
while it holds, so that every hub node and every restart count from the same start.

Only transitions write: each method reads first and takes the write lock only when the
row must change (a status that changes nothing costs one read). Under concurrency the
earliest start wins: the insert is ``ON CONFLICT ... DO UPDATE`` to the smaller time.
One portable SQL text per operation, shared with the PostgreSQL store.
"""

from __future__ import annotations

from .base import SqliteBase


class ConditionsMixin(SqliteBase):
    """The alert conditions' start times (see the module's docstring)."""

    def alert_conditions(self, site_id: str | None = None) -> dict[tuple[str, str], float]:
        """(site, kind) → since when it holds, of one site or of all."""
        sql = "SELECT site_id, kind, since FROM alert_conditions"
        params: tuple[str, ...] = ()
        if site_id is not None:
            sql += " WHERE site_id = ?"
            params = (site_id,)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY site_id, kind", params).fetchall()
        return {(r["site_id"], r["kind"]): float(r["since"]) for r in rows}

    def hold_condition(self, site_id: str, kind: str, *, since: float) -> float:
        """The condition (site, kind) holds, seen at ``since``: record it unless it is
        recorded already with that or an earlier start (then nothing is written). Returns
        the start kept, the earliest any caller saw."""
        with self._read() as c:
            row = c.execute("SELECT since FROM alert_conditions WHERE site_id = ? AND kind = ?",
                            (site_id, kind)).fetchone()
        if row is not None and row["since"] <= since:
            return float(row["since"])
        with self._write() as c:
            c.execute("INSERT INTO alert_conditions (site_id, kind, since) VALUES (?, ?, ?) "
                      "ON CONFLICT (site_id, kind) DO UPDATE SET since = excluded.since "
                      "WHERE excluded.since < alert_conditions.since", (site_id, kind, since))
            row = c.execute("SELECT since FROM alert_conditions WHERE site_id = ? AND kind = ?",
                            (site_id, kind)).fetchone()
        return float(row["since"])

    def end_condition(self, site_id: str, kind: str) -> bool:
        """The condition (site, kind) holds no more: forget its start. False (and nothing
        written) when none was recorded."""
        with self._read() as c:
            row = c.execute("SELECT 1 AS x FROM alert_conditions WHERE site_id = ? AND kind = ?",
                            (site_id, kind)).fetchone()
        if row is None:
            return False
        with self._write() as c:
            n = c.execute("DELETE FROM alert_conditions WHERE site_id = ? AND kind = ?", (site_id, kind)).rowcount
        return n > 0
