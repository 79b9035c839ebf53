"""The running agent as a member, a caretaker and the hub see it: over a real Mosquitto,
with simulated readers and gpiozero mock pins."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.__main__ import main as edge_main
from edge.agent import Agent
from edge.clock import FakeClock
from edge.sdnotify import Notifier
from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind

from .hubside import HubSide, access, agent_in_thread, entry, last_seq

MEMBER = "em4100:0A00B1C2D3"
CARETAKER = "iso14443a:04A1B2C3D4E5F6"
STRANGER = "em4100:0A00B1C2FF"
LOCK_EINGANG, CONTACT_EINGANG, EXIT_EINGANG, LOCK_COWORKING = 17, 27, 22, 5


def start_rig(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, clock: FakeClock | None = None,
              policy: dict[str, Any] | None = None, notifier: Notifier | None = None
              ) -> tuple[SiteFiles, HubSide, Any]:
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key, policy=policy)
    hub = HubSide(broker, hub_key, site.site, now=clock.time if clock is not None else time.time)
    kw: dict[str, Any] = {}
    if clock is not None:
        kw["clock"] = clock
    if notifier is not None:
        kw["notifier"] = notifier
    ctx = agent_in_thread(site, **kw)
    return site, hub, ctx


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
            ) -> Iterator[tuple[SiteFiles, HubSide, Agent, FakeClock]]:
    clock = FakeClock(time.time(), synchronized=True)
    site, hub, ctx = start_rig(tmp_path, broker, hub_key, clock, policy={"clock_trust": "ntp"})
    with ctx as agent:
        hub.wait_online()
        now = int(clock.time())
        hub.send(Kind.CACHE, hub.body_full([
            entry(site.cred_key, MEMBER, ["eingang", "coworking"], ref="booking-1", start=now - 600,
                  end=now + 3600, who="m-anna", room="coworking"),
            entry(site.cred_key, CARETAKER, ["eingang", "coworking"], ref=None, who="m-caretaker"),
        ]))
        assert hub.cache_ack().ok
        yield site, hub, agent, clock
    hub.close()


def test_a_booked_member_is_let_in_and_checked_into_the_room(running: Any, mock_pins: Any) -> None:
    site, hub, _agent, _ = running
    n = last_seq(hub)
    site.badge("coworking-sim", MEMBER)
    ev = access(hub, n)
    assert isinstance(ev, m.AccessGranted)
    assert (ev.door, ev.reason, ev.who, ev.ref) == ("coworking", "booking", "m-anna", "booking-1")
    assert ev.cred is not None and MEMBER not in ev.cred  # a keyed hash, never the card id
    assert mock_pins.pin(LOCK_COWORKING).state == 1  # fail-secure relay energised: unlocked
    checkin = hub.wait_event(lambda e: e.type == "occupancy.checkin")
    assert (checkin.room, checkin.who, checkin.reason) == ("coworking", "m-anna", "badge")  # type: ignore[attr-defined]
    occ = m.decode(hub.next(Kind.OCCUPANCY), m.Occupancy)
    while occ.rooms["coworking"].present == 0:
        occ = m.decode(hub.next(Kind.OCCUPANCY), m.Occupancy)
    assert occ.rooms["coworking"].who == ["m-anna"] and occ.rooms["coworking"].capacity == 8
    wait_for(lambda: mock_pins.pin(LOCK_COWORKING).state == 0, 10, what="relock")


def test_a_stranger_is_refused_and_the_door_stays_locked(running: Any, mock_pins: Any) -> None:
    site, hub, _, _ = running
    n = last_seq(hub)
    site.badge("eingang-sim", STRANGER)
    ev = access(hub, n)
    assert isinstance(ev, m.AccessDenied)
    assert (ev.door, ev.reason) == ("eingang", "unknown_credential")
    assert mock_pins.pin(LOCK_EINGANG).state == 0


def test_an_untrusted_clock_refuses_bookings_but_not_standing_grants(running: Any) -> None:
    site, hub, agent, clock = running
    clock.set_synchronized(False)
    agent.post(agent._check_clock)
    hub.wait_event(lambda e: e.type == "clock.untrusted")
    n = last_seq(hub)
    site.badge("eingang-sim", MEMBER)
    ev = access(hub, n)
    assert (ev.type, ev.reason) == ("access.denied", "clock_untrusted")  # type: ignore[attr-defined]
    n = ev.seq
    site.badge("eingang-sim", CARETAKER)
    ev = access(hub, n)
    assert (ev.type, ev.reason) == ("access.granted", "standing")  # type: ignore[attr-defined]
    # A clock stepped back before the newest signed time is untrusted even with NTP.
    clock.set_synchronized(True)
    clock.advance(-7200)
    agent.post(agent._check_clock)
    n = ev.seq
    site.badge("eingang-sim", MEMBER)
    ev = access(hub, n)
    assert ev.reason == "clock_untrusted"  # type: ignore[attr-defined]
    # A few seconds past where it was: the fake clock stands still, and the cache may have
    # been signed in a later second than the one it was set to.
    clock.advance(7200 + 5)
    agent.post(agent._check_clock)
    hub.wait_event(lambda e: e.type == "clock.trusted" and e.seq > n)


def test_outside_the_booking_window_the_member_is_refused(running: Any) -> None:
    site, hub, _, clock = running
    clock.advance(3600 + 60)
    n = last_seq(hub)
    site.badge("eingang-sim", MEMBER)
    assert access(hub, n).reason == "outside_window"  # type: ignore[attr-defined]


def test_lockdown_refuses_badges_survives_a_restart_and_ends(
    tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
) -> None:
    site, hub, ctx = start_rig(tmp_path, broker, hub_key)
    try:
        with ctx as first:
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARETAKER, ["eingang"], ref=None)]))
            assert hub.cache_ack().ok
            hub.send(Kind.COMMAND, hub.command("lockdown"))
            assert hub.command_ack().ok
            n = last_seq(hub)
            site.badge("eingang-sim", CARETAKER)
            assert access(hub, n).reason == "lockdown"  # type: ignore[attr-defined]
        with agent_in_thread(site) as agent:  # restarted: still in lockdown
            st = hub.wait_online(not_boot=first.boot)
            assert st.lockdown
            assert agent.doors["eingang"].mode == "lockdown"
            # The exit button still opens: egress is never blocked.
            n = last_seq(hub)
            mock_pins.pin(EXIT_EINGANG).drive_low()
            ev = access(hub, n)
            assert (ev.type, ev.reason) == ("access.granted", "exit_button")  # type: ignore[attr-defined]
            mock_pins.pin(EXIT_EINGANG).drive_high()
            hub.send(Kind.COMMAND, hub.command("lockdown_end"))
            assert hub.command_ack().ok
            n = last_seq(hub)
            site.badge("eingang-sim", CARETAKER)
            assert access(hub, n).reason == "standing"  # type: ignore[attr-defined]
    finally:
        hub.close()


def test_a_forced_door_is_reported_with_its_state(running: Any, mock_pins: Any) -> None:
    _, hub, _agent, _ = running
    mock_pins.pin(CONTACT_EINGANG).drive_low()  # shut
    mock_pins.pin(CONTACT_EINGANG).drive_high()  # opened while locked, no grant
    hub.wait_event(lambda e: e.type == "door.forced_open")

    def alarm() -> bool:
        while True:
            try:
                raw = hub.inbox[Kind.DOOR].get(timeout=5)
            except Exception:
                return False
            st = m.decode(raw, m.DoorState)
            if st.door == "eingang" and st.alarm == "forced_open":
                return st.locked and st.open is True

    assert alarm()


def test_the_rate_limit_stops_guessing(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey,
                                       mock_pins: Any) -> None:
    site, hub, ctx = start_rig(tmp_path, broker, hub_key, policy={"deny_burst": 3, "deny_refill_seconds": 3600})
    try:
        with ctx:
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARETAKER, ["eingang"], ref=None)]))
            assert hub.cache_ack().ok
            for i in range(6):
                site.badge("eingang-sim", f"pin:{1000 + i}")
            wait_for(lambda: sum(e.type == "access.denied" for e in hub.events) == 6, 10, what="six denials")
            reasons = [e.reason for e in hub.events if e.type == "access.denied"]  # type: ignore[attr-defined]
            assert reasons == ["unknown_credential"] * 3 + ["rate_limited"] * 3
            n = last_seq(hub)
            site.badge("eingang-sim", CARETAKER)  # even a valid card waits out the limit at this reader
            assert access(hub, n).reason == "rate_limited"  # type: ignore[attr-defined]
            n = last_seq(hub)
            site.badge("coworking-sim", CARETAKER)  # the other reader is not affected
            assert access(hub, n).type == "access.denied"  # wrong door for this card
            assert access(hub, n).reason == "wrong_door"  # type: ignore[attr-defined]
    finally:
        hub.close()


def test_status_cli_reads_beside_the_running_agent(running: Any, capsys: pytest.CaptureFixture[str]) -> None:
    site, hub, _, _ = running
    n = last_seq(hub)
    site.badge("eingang-sim", STRANGER)
    access(hub, n)
    assert edge_main(["status", "--config", str(site.config_path)]) == 0
    out = capsys.readouterr().out
    assert "version 1, 2 entries" in out
    assert "access.denied" in out and "reason=unknown_credential" in out
    from edge.config import load
    from wire.keys import b64_32, kid

    assert f"hub keys trusted: {kid(b64_32(load(site.config_path, check_files=False).hub.signing_public_key))}\n" in out


def test_the_watchdog_is_petted_only_while_the_main_loop_runs(
    tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
) -> None:
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(5)
    notifier = Notifier({"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"})
    _site, hub, ctx = start_rig(tmp_path, broker, hub_key, notifier=notifier)

    def next_msg(timeout: float = 5.0) -> str:
        sock.settimeout(timeout)
        return sock.recv(4096).decode()

    try:
        with ctx as agent:
            assert next_msg().startswith("READY=1")
            assert next_msg() == "WATCHDOG=1"
            stuck = threading.Event()
            agent.post(lambda: stuck.wait(10))  # the main loop hangs in a work item
            # Pings sent before the hang was noticed may still arrive; then they must stop.
            deadline = time.monotonic() + 5
            while True:
                try:
                    next_msg(1.0)
                except TimeoutError:
                    break  # a whole second without a ping: systemd would restart the agent
                assert time.monotonic() < deadline, "the watchdog was petted while the main loop hung"
            stuck.set()
            assert next_msg() == "WATCHDOG=1"  # alive again
    finally:
        hub.close()
        sock.close()
