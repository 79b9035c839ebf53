"""The record of a stored ``access.denied`` event, as the repeated-denials alert reads it
(``Store.access_denied``; hub/alerts/denials.py; the SQLite side: store/sqlite/denied.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeniedRow:
    """One refused badge: the door, the site's reason, the site's time and whether its
    clock was trusted then, and when the hub stored it."""

    door: str
    reason: str
    ts: float
    clock_synced: bool
    received_at: float

    @property
    def at(self) -> float:
        """When it happened as the alerts count it: the site's time where its clock was
        trusted, else the hub's time of arrival."""
        return self.ts if self.clock_synced else self.received_at
