"""The repeated-denials alert's window, counted from the refusals stored in the events, so
that every hub node and every restart count the same refusals.

With several hub nodes the shared subscription spreads a site's events over the nodes
(each node's ``Alerter.on_event`` sees its share) and the alerts' tick runs on the leader.
A window kept in each process's memory would count only that node's share (more guesses
needed before the alert opens) and let the leader clear the alert while other nodes still
take refusals; a restart would forget it. ``StoredDenials`` reads the window from the
``access.denied`` events in the store instead (``Store.access_denied``, one indexed read):

- on each guessing refusal (``add``, on the node that stored it, after storing it): the
  site's refusals received since one window (plus ``SKEW``) before the refusal's time,
  kept for its door, guessing reasons only, within one window either side of it; the alert
  opens once ``count`` of them lie within one window (``rules.burst``). Whichever node
  reads last sees both its own and the other nodes' committed refusals, so the alert opens
  at exactly ``count`` refusals however they are split;
- on each tick, for each open ``denials`` alert only (``quiet``): the door's last stored
  refusal within the last window; the alert clears once there has been none for a window.

The time that counts is the site's (``ts``) where its clock was trusted, else the hub's
time of arrival (``received_at``): a site's outbox delivering old refusals after an outage
does not look like guessing now, and an untrusted clock says nothing. Refusals are found
by their time of arrival, which for a trusted clock is not earlier than the site's time
(less ``SKEW`` for the clocks' difference). At most ``LIMIT`` refusals of a site are read
per call (the newest received): a site with more than that within one window is flooded
anyway.
"""

from __future__ import annotations

from ..store import Store
from . import rules

#: The most refusals of one site read per decision.
LIMIT = 1000
#: How much earlier than the site's trusted time the hub may have received a refusal
#: (the two clocks' difference), in seconds.
SKEW = 60.0


class StoredDenials(rules.Denials):
    """``rules.Denials`` counting from the store (see the module's docstring); it keeps
    nothing in memory."""

    def __init__(self, store: Store, count: int, window: float) -> None:
        super().__init__(count, window)
        self.store = store

    def _door(self, site: str, door: str, received_since: float) -> list[float]:
        rows = self.store.access_denied(site, received_since=received_since, limit=LIMIT)
        return [r.at for r in rows if r.door == door and r.reason in rules.GUESS_REASONS]

    def _times(self, site: str, door: str, at: float) -> list[float]:
        """The door's stored refusals within a window either side of ``at`` (the refusal
        being counted is among them: it is stored before the alerter sees it)."""
        return [t for t in self._door(site, door, at - self.window - SKEW)
                if at - self.window <= t <= at + self.window]

    def _last(self, site: str, door: str, now: float) -> float | None:
        """The time of the door's last stored refusal within the last window (None: none)."""
        return max(self._door(site, door, now - self.window - SKEW), default=None)
