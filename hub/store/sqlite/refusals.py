"""Per-site counts of the messages the hub refused from a site, in the hub's SQLite store.

A refusal is a message a site was allowed to publish (the broker's ACL let it through) that
the hub would not take in: larger than the limit for its topic, an occupancy list longer
than the room's capacity allows or for a room the hub does not know, a cache version the
hub never issued. Each is counted per (site, kind) with the time and detail of the last
one, so that ``torwart-hub sites`` shows which site sends what (a broken or compromised
site). Malformed messages are counted by the ingest, not here.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..streams import Refusal
from .base import SqliteBase

#: ``last_reason`` is cut to this many characters.
MAX_REASON = 300


class RefusalsMixin(SqliteBase):
    """Refusal counters (the checks that refuse are in hub.limits and hub.publisher)."""

    def record_refusals(self, refusals: Iterable[tuple[str, str, int, str]], *, at: float) -> None:
        """Add (site, kind, how many, last reason) to the counters, in one transaction."""
        rows = [(site, kind, n, at, reason[:MAX_REASON]) for site, kind, n, reason in refusals if n > 0]
        if not rows:
            return
        with self._write() as c:
            c.executemany(
                "INSERT INTO site_refusals (site_id, kind, count, last_at, last_reason) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site_id, kind) DO UPDATE SET count = site_refusals.count + excluded.count, "
                "last_at = excluded.last_at, last_reason = excluded.last_reason",
                rows,
            )

    def site_refusals(self, site_id: str | None = None) -> list[Refusal]:
        """The counters of ``site_id`` (None: every site), by site and kind."""
        sql = "SELECT site_id, kind, count, last_at, last_reason FROM site_refusals"
        params: tuple[str, ...] = ()
        if site_id is not None:
            sql += " WHERE site_id = ?"
            params = (site_id,)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY site_id, kind", params).fetchall()
        return [Refusal(site_id=r["site_id"], kind=r["kind"], count=r["count"], last_at=r["last_at"],
                        last_reason=r["last_reason"]) for r in rows]
