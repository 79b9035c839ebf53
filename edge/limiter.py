"""The per-reader denial budget, kept across restarts in the site's state database.

Within one process the budget is a ``DenialLimiter`` (edge/decide.py) on the monotonic
clock, so a wall-clock step neither refills nor drains it.

Across restarts: a monotonic reading of an earlier process (or boot) cannot be compared
with this one's (it restarts near zero at every boot, and nothing says how long the site
was down), so none is stored. What is stored is each reader's *remaining tokens*; a start
restores them as of its own "now". A restart therefore counts as *no time passed*: time
spent down never refills a budget, and a restart never hands a guesser a fresh burst.
The price is on the safe side: a reader that was limited when the agent stopped waits
out its refill again after the start.

Writes (``synchronous=FULL``, one fsync each):

- each recorded denial writes that reader's tokens before the denial is reported. Denials
  refused as ``rate_limited`` are not recorded, so a flood writes nothing; a grant and a
  lookup never write (the badge path stays fast);
- ``save`` writes budgets that have refilled since (the agent calls it every minute and at
  a clean stop; a budget back at its full burst loses its row). After a crash, whatever
  refilled since the last save is lost, again on the safe side.

A failed write is logged and the budget goes on in memory: the denial is still decided
and reported. Used from the agent's main loop only, like the stores.
"""

from __future__ import annotations

import logging

from .decide import DenialLimiter
from .errors import StorageError
from .statedb import StateDB

log = logging.getLogger(__name__)


class DurableLimiter:
    """``DenialLimiter``'s ``limited``/``record_denial``, with the budgets kept in ``state``."""

    def __init__(self, limiter: DenialLimiter, state: StateDB, now: float) -> None:
        self._lim = limiter
        self._state = state
        self._stored = state.denial_budgets()
        for key, tokens in self._stored.items():
            limiter.restore(key, tokens, now)
        if self._stored:
            log.info("denial budgets restored (no refill for the time the agent was down): %s",
                     ", ".join(f"{k} {t:.2f}" for k, t in sorted(self._stored.items())))

    def limited(self, key: str, now: float) -> bool:
        """True while ``key`` has used up its denials. Never writes."""
        return self._lim.limited(key, now)

    def tokens(self, key: str, now: float) -> float:
        return self._lim.tokens(key, now)

    def record_denial(self, key: str, now: float) -> None:
        """Take one token from ``key`` and store what is left."""
        self._lim.record_denial(key, now)
        self._store(key, self._lim.tokens(key, now))

    def save(self, now: float) -> None:
        """Store the budgets that refilled since they were last stored."""
        for key in self._lim.denied_keys():
            tokens = self._lim.tokens(key, now)
            if tokens != self._stored.get(key, float(self._lim.burst)):
                self._store(key, tokens)

    def _store(self, key: str, tokens: float) -> None:
        full = tokens >= self._lim.burst
        try:
            self._state.set_denial_budget(key, None if full else tokens)
        except StorageError as exc:
            log.warning("denial budget of %s kept in memory only: %s", key, exc)
            return
        if full:
            self._stored.pop(key, None)
        else:
            self._stored[key] = tokens
