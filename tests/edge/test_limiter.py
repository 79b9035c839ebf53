"""The denial budget survives restarts: kept in the site's state database, restored with no
refill for the time the agent was down, written on denials only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.decide import DenialLimiter
from edge.limiter import DurableLimiter
from edge.statedb import StateDB
from testkit.broker import Mosquitto
from testkit.site import write_site
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry

CARETAKER = "iso14443a:04A1B2C3D4E5F6"


def durable(path: Path, now: float, burst: int = 3, refill: float = 60.0) -> tuple[DurableLimiter, StateDB]:
    state = StateDB(path)
    return DurableLimiter(DenialLimiter(burst, refill), state, now), state


def test_a_restored_budget_is_not_refilled_for_the_time_down(tmp_path: Path) -> None:
    lim, state = durable(tmp_path / "state.db", 5000.0)
    for _ in range(3):
        lim.record_denial("r1", 5000.0)
    lim.record_denial("r2", 5000.0)
    assert lim.limited("r1", 5000.0)
    state.close()
    # A new boot: the monotonic clock starts near zero again, and says nothing about the downtime.
    lim, state = durable(tmp_path / "state.db", 3.0)
    assert lim.limited("r1", 3.0) and lim.limited("r1", 3.0 + 59)
    assert not lim.limited("r1", 3.0 + 60)  # refills from the restart on, as before
    assert lim.tokens("r2", 3.0) == 2.0
    assert lim.tokens("r3", 3.0) == 3.0  # a reader that never guessed holds its burst
    state.close()


def test_only_denials_write_the_state_database(tmp_path: Path) -> None:
    lim, state = durable(tmp_path / "state.db", 0.0)
    try:
        before = state._db.total_changes
        for t in range(100):  # lookups, as every badge (a grant too) makes
            assert not lim.limited("r1", float(t))
        assert state._db.total_changes == before
        lim.record_denial("r1", 100.0)
        assert state._db.total_changes == before + 1
        lim.save(100.0)  # nothing refilled since the denial: nothing to write
        assert state._db.total_changes == before + 1
    finally:
        state.close()


def test_save_stores_refilled_budgets_and_drops_full_ones(tmp_path: Path) -> None:
    lim, state = durable(tmp_path / "state.db", 0.0)
    for _ in range(3):
        lim.record_denial("r1", 0.0)
    assert state.denial_budgets() == {"r1": 0.0}
    lim.save(90.0)
    assert state.denial_budgets() == {"r1": 1.5}
    lim.save(600.0)  # back at the full burst: no row
    assert state.denial_budgets() == {}
    state.close()


@pytest.mark.parametrize("stored", [-4.0, 99.0, float("inf")])
def test_a_nonsense_stored_budget_is_clamped(tmp_path: Path, stored: float) -> None:
    state = StateDB(tmp_path / "state.db")
    state.set_denial_budget("r1", stored)
    lim = DurableLimiter(DenialLimiter(3, 60.0), state, 0.0)
    assert 0.0 <= lim.tokens("r1", 0.0) <= 3.0
    assert lim.tokens("r1", 0.0) == (3.0 if stored == 99.0 else 0.0)
    state.close()


def test_a_restart_hands_a_guesser_no_fresh_burst(tmp_path: Path, broker: Mosquitto, mock_pins: Any) -> None:
    key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "minheim", "minheim", broker, key,
                      policy={"deny_burst": 3, "deny_refill_seconds": 3600})
    hub = HubSide(broker, key, site.site)

    def denials() -> list[str]:
        return [e.reason for e in hub.events if isinstance(e, m.AccessDenied)]

    try:
        # First run, as a process: two wrong PINs, then it is killed (no clean stop, no save).
        site.start()
        first = hub.wait_online(timeout=30)
        hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARETAKER, ["eingang"], ref=None)]))
        assert hub.cache_ack().ok
        for guess in (1000, 1001):
            site.badge("eingang-sim", f"pin:{guess}")
        wait_for(lambda: len(denials()) == 2, 15, what="two denials")
        site.kill()

        # Restarted on the same data directory: one guess of the three is left, not a fresh burst.
        with agent_in_thread(site) as second:
            hub.wait_online(not_boot=first.boot)
            for guess in (1002, 1003):
                site.badge("eingang-sim", f"pin:{guess}")
            wait_for(lambda: len(denials()) == 4, 15, what="four denials")
            assert denials() == ["unknown_credential"] * 3 + ["rate_limited"]

        # Stopped while limited and started again: still limited, even for a valid card.
        with agent_in_thread(site):
            hub.wait_online(not_boot=second.boot)
            site.badge("eingang-sim", CARETAKER)
            wait_for(lambda: len(denials()) == 5, 15, what="the caretaker refused")
            assert denials()[-1] == "rate_limited"
            assert mock_pins.pin(17).state == 0
    finally:
        site.kill()
        hub.close()
