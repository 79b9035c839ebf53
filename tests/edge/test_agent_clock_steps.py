"""A site whose clock cannot be trusted (no NTP, or stepped by someone on the hall's LAN),
over a real Mosquitto with the real agent on mock pins: office hours, old signed commands
and time-bounded standing grants do not follow such a clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.clock import FakeClock
from testkit.broker import Mosquitto
from testkit.site import SiteFiles, default_layout, write_site
from testkit.util import wait_for
from wire import messages as m
from wire.handoff import submit
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry, site_on_fake_clock

LOCK_EINGANG = 17
CARETAKER = "iso14443a:04A1B2C3D4E5F6"
FORMER = "em4100:0A00B1C2D3"  # a standing grant that has ended
NEXT_MONTH = "em4100:0A00B1C2D4"  # a standing grant that starts later
T = TypeVar("T")


def on_loop(agent: Agent, fn: Callable[[], T], timeout: float = 10.0) -> T:
    """Run ``fn`` on the agent's main loop (where its stores live) and return its result."""
    try:
        return submit(agent.post, fn).result(timeout)
    except TimeoutError:
        raise AssertionError("the main loop did not run the work item") from None


def door_state(hub: HubSide, door: str, mode: str | None = None, timeout: float = 10.0) -> m.DoorState:
    """The next DoorState the site publishes for ``door`` (in ``mode``, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        st: m.DoorState = m.decode(hub.next(Kind.DOOR, max(0.1, deadline - time.monotonic())), m.DoorState)
        if st.door == door and mode in (None, st.mode):
            return st


def clock_verdict(agent: Agent, hub: HubSide, kind: str, step: Callable[[], None]) -> None:
    """``step`` the clock, check it now (not at the agent's next 10 s tick), and wait for
    the verdict event ``kind`` (which the tick may also have reported first)."""
    n = max((e.seq for e in hub.events), default=0)
    step()
    agent.post(agent._check_clock)
    hub.wait_event(lambda e: e.seq > n and e.type == kind)


# --- office hours --------------------------------------------------------------------------------


def test_office_hours_open_a_door_only_while_the_clock_is_trusted(
    tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
) -> None:
    layout = default_layout()
    layout["doors"][0]["office_hours"] = [{"days": "mon-sun", "start": "08:00", "end": "18:00"}]
    # A Wednesday at noon in the site's time zone, but the Pi booted without NTP.
    clock = FakeClock(datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp(),
                      synchronized=False)
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key, layout=layout,
                      policy={"clock_trust": "ntp"})
    hub = HubSide(broker, hub_key, site.site, now=clock.time)
    lock = mock_pins.pin(LOCK_EINGANG)
    try:
        with agent_in_thread(site, clock=clock) as agent:
            hub.wait_online()
            st = door_state(hub, "eingang")
            assert (st.mode, st.locked) == ("normal", True)  # badges decide
            assert agent.doors["eingang"].mode == "normal" and lock.state == 0

            # NTP synchronises: the schedule resumes as soon as the clock verdict changes.
            clock_verdict(agent, hub, "clock.trusted", lambda: clock.set_synchronized(True))
            st = door_state(hub, "eingang", "office_hours")
            assert not st.locked
            assert lock.state == 1

            # Trust lost again (NTP gone): back to normal at once, not at the next schedule tick.
            clock_verdict(agent, hub, "clock.untrusted", lambda: clock.set_synchronized(False))
            st = door_state(hub, "eingang", "normal")
            assert st.locked
            assert lock.state == 0
    finally:
        hub.close()


# --- old signed commands ------------------------------------------------------------------------------


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
            ) -> Iterator[tuple[SiteFiles, HubSide, Agent, FakeClock]]:
    with site_on_fake_clock(tmp_path, broker, hub_key) as rig:
        yield rig


def executed_unlock(hub: HubSide, mock_pins: Any) -> m.Command:
    """A remote unlock the site executes (and someone on the LAN records)."""
    cmd = hub.command("unlock", door="eingang", seconds=1, expires_in=30)
    hub.send(Kind.COMMAND, cmd)
    assert hub.command_ack().ok
    wait_for(lambda: mock_pins.pin(LOCK_EINGANG).state == 0, 10, what="relock after the remote unlock")
    return cmd


def test_a_recorded_unlock_replayed_after_a_clock_step_back_is_refused(running: Any, mock_pins: Any) -> None:
    _site, hub, agent, clock = running
    t0 = clock.time()
    cmd = executed_unlock(hub, mock_pins)
    # A day later the hub signs a new cache, and the hourly housekeeping runs.
    clock.advance(86400)
    hub.send(Kind.CACHE, hub.body_full([]))
    assert hub.cache_ack().ok
    on_loop(agent, agent._housekeeping)
    # Someone steps the site's clock back to when the command was fresh and replays it.
    clock_verdict(agent, hub, "clock.untrusted", lambda: clock.set(t0 + 5))
    hub.send(Kind.COMMAND, cmd)
    ack = hub.command_ack()
    assert (ack.id, ack.ok) == (cmd.id, False)
    assert ack.error == "expired"  # its expiry is before the newest signed time the site has seen
    assert mock_pins.pin(LOCK_EINGANG).state == 0 and agent.doors["eingang"].locked


def test_an_executed_id_is_kept_until_the_newest_signed_time_passes_its_expiry(running: Any, mock_pins: Any) -> None:
    _site, hub, agent, clock = running
    t0 = clock.time()
    cmd = executed_unlock(hub, mock_pins)

    def purge_then_seen() -> bool:
        agent._housekeeping()
        return agent.state.command_seen(cmd.id)

    # The wall clock stepped far ahead, nothing signed since: the purge must not forget the id.
    clock.set(t0 + 30 * 86400)
    assert on_loop(agent, purge_then_seen)
    clock.set(t0 + 5)
    hub.send(Kind.COMMAND, cmd)
    assert hub.command_ack().error == "replayed"
    assert mock_pins.pin(LOCK_EINGANG).state == 0

    # A signed time past the command's expiry arrives: now the id may go, the command is expired for good.
    clock.set(cmd.expires_at + 1)
    hub.send(Kind.CACHE, hub.body_full([]))
    assert hub.cache_ack().ok
    assert not on_loop(agent, purge_then_seen)
    clock.set(t0 + 5)
    hub.send(Kind.COMMAND, cmd)
    assert hub.command_ack().error == "expired"
    assert mock_pins.pin(LOCK_EINGANG).state == 0 and agent.doors["eingang"].locked


# --- time-bounded standing grants --------------------------------------------------------------------


def test_with_an_untrusted_clock_only_unbounded_standing_grants_open(running: Any, mock_pins: Any) -> None:
    site, hub, agent, clock = running
    now = int(clock.time())
    hub.send(Kind.CACHE, hub.body_full([
        entry(site.cred_key, CARETAKER, ["eingang"], ref=None, who="m-caretaker"),
        entry(site.cred_key, FORMER, ["eingang"], ref=None, who="m-former", end=now - 60),
        entry(site.cred_key, NEXT_MONTH, ["eingang"], ref=None, who="m-next", start=now + 3600),
    ]))
    assert hub.cache_ack().ok

    def badge(credential: str) -> m.Event:
        n = max((e.seq for e in hub.events), default=0)
        site.badge("eingang-sim", credential)
        return hub.wait_event(lambda e: e.seq > n and e.type.startswith("access."))

    assert badge(FORMER).reason == "outside_window"  # type: ignore[attr-defined]
    assert badge(NEXT_MONTH).reason == "outside_window"  # type: ignore[attr-defined]

    # Stepped back two hours (NTP still claims sync, but the clock is behind the signed time):
    # the ended grant is not revived.
    clock_verdict(agent, hub, "clock.untrusted", lambda: clock.advance(-7200))
    ev = badge(FORMER)
    assert (ev.type, ev.reason) == ("access.denied", "clock_untrusted")  # type: ignore[attr-defined]
    assert mock_pins.pin(LOCK_EINGANG).state == 0
    ev = badge(CARETAKER)  # an unbounded standing grant still opens
    assert (ev.type, ev.reason) == ("access.granted", "standing")  # type: ignore[attr-defined]
    wait_for(lambda: mock_pins.pin(LOCK_EINGANG).state == 0, 10, what="relock")

    # NTP lost and the clock jumped two hours ahead: the later grant does not open early.
    clock.set(now + 7200)
    clock.set_synchronized(False)
    ev = badge(NEXT_MONTH)
    assert (ev.type, ev.reason) == ("access.denied", "clock_untrusted")  # type: ignore[attr-defined]
    assert mock_pins.pin(LOCK_EINGANG).state == 0
