"""Since when the slow alerts' conditions hold, kept in the hub store, so that every hub
node and every restart count ``clock_minutes`` and ``cache_minutes`` from the same start.

With several hub nodes, a site's statuses and events are taken in by whichever node
receives them (the shared subscription) and the alerts' tick runs on the leader: a start
kept in one process's memory would be lost on a restart or a change of leader, and
missing on the other nodes, so an alert would come up to one whole duration late, or never
while nodes keep changing. ``StoredSince`` keeps it in the table ``alert_conditions``
(``Store.hold_condition``, ``end_condition``): written only when the condition starts (the
earliest start any node saw wins) or ends (the row is deleted), read on every sighting.
The tick reads all rows once per round (``load``) and decides from that snapshot
(``rules.timed``).

Rows of sites no longer configured are deleted by the tick (``forget_other_sites``); a
row lives only while its condition holds, so the table needs no other retention.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from ..store import Store
from . import rules

log = logging.getLogger(__name__)


class StoredSince(rules.Since):
    """``rules.Since`` whose starts live in the store: ``see`` records a transition there
    (and nothing when the store already says so); ``since`` and ``overdue`` answer from
    what the last ``load`` or ``see`` found."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def load(self) -> None:
        """Take every condition's start from the store (one read)."""
        self._since = self.store.alert_conditions()

    def see(self, key: tuple[str, str], holds: bool, at: float) -> None:
        """The condition holds, seen at ``at`` (the start kept is the earliest any node
        saw), or not (its start is forgotten, on every node)."""
        site, kind = key
        if holds:
            self._since[key] = self.store.hold_condition(site, kind, since=at)
        else:
            if self.store.end_condition(site, kind):
                log.debug("site %s: condition %s ended", site or "-", kind)
            self._since.pop(key, None)

    def settle(self, key: tuple[str, str], holds: bool, at: float) -> None:
        """``see`` where the last ``load`` disagrees (the tick's way: no store access for a
        condition that has not changed since the round began)."""
        if holds != (key in self._since):
            self.see(key, holds, at)

    def forget_other_sites(self, sites: Collection[str]) -> None:
        """Delete the starts of sites not in ``sites`` (removed from the config)."""
        for site, kind in [k for k in self._since if k[0] not in sites]:
            self.see((site, kind), False, 0.0)
