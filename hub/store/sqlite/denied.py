"""The refused badges of a site, read from the stored events (``access.denied``) for the
repeated-denials alert (hub/alerts/denials.py), which every hub node counts from here.

One indexed read per call: the index ``events (site_id, type, received_at)`` (migration
``_events_by_site_type_received``) finds a site's refusals received since a time, newest
first, at most ``limit`` of them. The door, reason and clock are in the event's JSON
payload; they are picked out here (no JSON function in the shared SQL), so the caller
filters by door. One portable SQL text, shared with the PostgreSQL store.
"""

from __future__ import annotations

import logging

import msgspec

from ..denied import DeniedRow
from .base import SqliteBase

log = logging.getLogger(__name__)

#: The largest ``limit`` a caller may ask for.
MAX_LIMIT = 10_000


class _Fields(msgspec.Struct):
    """What the alert needs of an ``access.denied`` payload (the other fields are skipped)."""

    door: str
    reason: str
    clock_synced: bool = False


_decode = msgspec.json.Decoder(_Fields).decode


class DeniedMixin(SqliteBase):
    """Stored refusals of a site (see the module's docstring)."""

    def access_denied(self, site_id: str, *, received_since: float, limit: int) -> list[DeniedRow]:
        """The ``access.denied`` events of ``site_id`` the hub received at or after
        ``received_since``, newest received first, at most ``limit`` (1 to ``MAX_LIMIT``;
        else ValueError). A payload without a door and reason (none is stored so: the
        ingest quarantines what does not decode) is skipped with a warning."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
        with self._read() as c:
            rows = c.execute(
                "SELECT seq, ts, received_at, payload FROM events WHERE site_id = ? AND type = 'access.denied' "
                "AND received_at >= ? ORDER BY received_at DESC LIMIT ?", (site_id, received_since, limit),
            ).fetchall()
        out: list[DeniedRow] = []
        for r in rows:
            try:
                f = _decode(r["payload"])
            except msgspec.DecodeError as e:
                log.warning("site %s: stored access.denied seq %s unreadable (%s); not counted", site_id,
                            r["seq"], e)
                continue
            out.append(DeniedRow(door=f.door, reason=f.reason, ts=float(r["ts"]), clock_synced=f.clock_synced,
                                 received_at=float(r["received_at"])))
        return out
