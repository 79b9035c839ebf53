"""What the agent records about a decision, and what a wall-clock step may not change:
regressions found while building the chaos run's decision check (testkit/chaos_check.py),
which recomputes every access event from the cache version, time and clock verdict the
event names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.clock import FakeClock, OffsetClock
from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from wire import messages as m
from wire.topics import Kind

from .hubside import HubSide, access, agent_in_thread, entry, last_seq, site_on_fake_clock

MEMBER = "em4100:0A00B1C2D3"
STRANGER = "em4100:0A00B1C2FF"


@pytest.fixture
def fake_clock_site(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
                    ) -> Iterator[tuple[SiteFiles, HubSide, Agent, FakeClock]]:
    with site_on_fake_clock(tmp_path, broker, hub_key) as (site, hub, agent, clock):
        now = int(clock.time())
        hub.send(Kind.CACHE, hub.body_full([
            entry(site.cred_key, MEMBER, ["eingang"], ref="booking-1", start=now - 600, end=now + 3600,
                  who="m-anna"),
        ], version=7))
        assert hub.cache_ack().ok
        yield site, hub, agent, clock


def test_an_access_event_names_the_cache_version_it_was_decided_from(fake_clock_site: Any) -> None:
    site, hub, _, clock = fake_clock_site
    n = last_seq(hub)
    site.badge("eingang-sim", MEMBER)
    ev = access(hub, n)
    assert isinstance(ev, m.AccessGranted)
    assert (ev.reason, ev.cache_version, ev.ts) == ("booking", 7, clock.time())
    n = ev.seq
    site.badge("eingang-sim", STRANGER)
    ev = access(hub, n)
    assert isinstance(ev, m.AccessDenied)
    assert (ev.reason, ev.cache_version) == ("unknown_credential", 7)


def test_an_access_event_carries_the_clock_verdict_its_decision_used(fake_clock_site: Any) -> None:
    # The clock steps back an hour (before the newest signed time): the next booking is
    # refused as clock_untrusted at once, before the periodic clock check has noticed.
    # The event must say the clock was untrusted; it used to carry the periodic check's
    # stale verdict (clock_synced true next to reason clock_untrusted).
    site, hub, _, clock = fake_clock_site
    clock.advance(-3600)
    n = last_seq(hub)
    site.badge("eingang-sim", MEMBER)
    ev = access(hub, n)
    assert isinstance(ev, m.AccessDenied)
    assert ev.reason == "clock_untrusted"
    assert ev.clock_synced is False
    assert ev.ts == clock.time()


def test_a_wall_clock_step_does_not_refill_the_denial_budget(tmp_path: Path, broker: Mosquitto,
                                                              hub_key: Ed25519PrivateKey, mock_pins: Any) -> None:
    offset = tmp_path / "offset"
    offset.write_text("0\n")
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key,
                      policy={"deny_burst": 2, "deny_refill_seconds": 300})
    hub = HubSide(broker, hub_key, site.site)
    try:
        with agent_in_thread(site, clock=OffsetClock(offset)):
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([]))
            assert hub.cache_ack().ok
            reasons = []
            for _ in range(3):
                n = last_seq(hub)
                site.badge("eingang-sim", STRANGER)
                reasons.append(access(hub, n).reason)  # type: ignore[attr-defined]
            assert reasons == ["unknown_credential", "unknown_credential", "rate_limited"]
            # The wall clock jumps a day ahead (an NTP step after a boot on an old time):
            # no real time has passed, so the guesser gets no new tries.
            tmp = tmp_path / "offset.tmp"
            tmp.write_text(f"{86400}\n")
            tmp.replace(offset)
            n = last_seq(hub)
            site.badge("eingang-sim", STRANGER)
            ev = access(hub, n)
            assert ev.reason == "rate_limited"  # type: ignore[attr-defined]
            assert ev.ts > time.time() + 86000  # the step itself took effect
    finally:
        hub.close()
