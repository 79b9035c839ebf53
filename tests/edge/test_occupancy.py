"""Who is in which room, at the site: check-in through an in-reader, check-out through an
out-reader or a second badge in a toggle room, at the booking's end, by command; presence
survives an agent restart and is published retained."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.clock import FakeClock
from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry

ANNA, BEN = "em4100:0A00000001", "em4100:0A00000002"

LAYOUT = {
    "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8},
              {"id": "besprechung", "name": "Besprechung", "capacity": 4, "toggle": True}],
    "doors": [{"id": "coworking", "room": "coworking", "lock_pin": 5},
              {"id": "besprechung", "room": "besprechung", "lock_pin": 12}],
    "readers": [{"id": "cw-in", "type": "sim", "door": "coworking"},
                {"id": "cw-out", "type": "sim", "door": "coworking", "direction": "out"},
                {"id": "bs", "type": "sim", "door": "besprechung"}],
}


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto, mock_pins: Any) -> Iterator[tuple[SiteFiles, HubSide]]:
    key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "site", "minheim", broker, key, layout=LAYOUT)
    hub = HubSide(broker, key, site.site)
    yield site, hub
    hub.close()


def cache(site: SiteFiles, hub: HubSide, until: int) -> None:
    now = int(hub.now())
    hub.send(Kind.CACHE, hub.body_full([
        entry(site.cred_key, ANNA, ["coworking", "besprechung"], ref="bk-a", start=now - 60, end=until, who="m-anna"),
        entry(site.cred_key, BEN, ["coworking", "besprechung"], ref="bk-b", start=now - 60, end=now + 3600,
              who="m-ben"),
    ]))
    assert hub.cache_ack().ok


def occupancy(hub: HubSide, room: str, want: list[str], timeout: float = 10) -> m.Occupancy:
    def match() -> m.Occupancy | None:
        try:
            occ: m.Occupancy = m.decode(hub.next(Kind.OCCUPANCY, 0.5), m.Occupancy)
        except Exception:
            return None
        return occ if sorted(occ.rooms[room].who) == sorted(want) else None

    return wait_for(match, timeout, interval=0, what=f"{room} holding {want}")


def moves(hub: HubSide) -> list[tuple[str, str, str, str]]:
    return [(e.type.split(".")[1], e.room, e.who, e.reason) for e in hub.events  # type: ignore[attr-defined]
            if e.type.startswith("occupancy.")]


def test_in_and_out_readers_check_in_and_out(rig: tuple[SiteFiles, HubSide]) -> None:
    site, hub = rig
    with agent_in_thread(site):
        hub.wait_online()
        cache(site, hub, int(time.time()) + 3600)
        site.badge("cw-in", ANNA)
        site.badge("cw-in", BEN)
        occupancy(hub, "coworking", ["m-anna", "m-ben"])
        site.badge("cw-in", ANNA)  # badging in again changes nothing
        # The readers are separate FIFOs: let the second in-badge be decided before the out-badge.
        wait_for(lambda: sum(e.type == "access.granted" for e in hub.events) >= 3, 10, what="three grants")
        site.badge("cw-out", ANNA)
        occ = occupancy(hub, "coworking", ["m-ben"])
        assert (occ.rooms["coworking"].present, occ.rooms["coworking"].capacity) == (1, 8)
    assert moves(hub) == [("checkin", "coworking", "m-anna", "badge"), ("checkin", "coworking", "m-ben", "badge"),
                          ("checkout", "coworking", "m-anna", "badge")]


def test_a_second_badge_in_a_toggle_room_checks_out(rig: tuple[SiteFiles, HubSide]) -> None:
    site, hub = rig
    with agent_in_thread(site):
        hub.wait_online()
        cache(site, hub, int(time.time()) + 3600)
        site.badge("bs", ANNA)
        occupancy(hub, "besprechung", ["m-anna"])
        site.badge("bs", ANNA)
        occupancy(hub, "besprechung", [])


def test_presence_survives_a_restart_and_ends_with_the_booking_or_by_command(
    rig: tuple[SiteFiles, HubSide], mock_pins: Any
) -> None:
    site, hub = rig
    clock = FakeClock(time.time())
    hub.now = clock.time
    with agent_in_thread(site, clock=clock) as first:
        hub.wait_online()
        cache(site, hub, int(clock.time()) + 600)  # Anna's booking ends in ten minutes
        site.badge("cw-in", ANNA)
        site.badge("cw-in", BEN)
        occupancy(hub, "coworking", ["m-anna", "m-ben"])
    with agent_in_thread(site, clock=clock) as agent:
        hub.wait_online(not_boot=first.boot)
        occupancy(hub, "coworking", ["m-anna", "m-ben"])  # still in after the restart
        clock.advance(601)
        agent.post(agent.occupancy.expire)
        occupancy(hub, "coworking", ["m-ben"])
        hub.send(Kind.COMMAND, hub.command("checkout_all", expires_in=100_000))
        assert hub.command_ack().ok
        occupancy(hub, "coworking", [])
    assert ("checkout", "coworking", "m-anna", "booking_ended") in moves(hub)
    assert ("checkout", "coworking", "m-ben", "command") in moves(hub)
