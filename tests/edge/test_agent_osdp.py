"""The real agent with an OSDP reader (libosdp's PeripheralDevice on a pty): decisions
show on the reader's LED and buzzer, and its supervision reaches the hub as
``reader.online`` / ``reader.offline`` / ``reader.tamper`` events (PROTOCOL.md §4)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from osdp import Command, CommandLEDColor

from testkit.broker import Mosquitto
from testkit.osdp_pd import Pd, PdBus, wiegand_frame
from testkit.site import default_layout, write_site
from testkit.util import wait_for
from wire.keys import write_scbk_file
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry

MEMBER = 0x3A1F2C
STRANGER = 0x3A1F2D
LOCK_EINGANG = 17


@pytest.fixture
def osdp_site(tmp_path: Path, broker: Mosquitto, mock_pins: Any) -> Iterator[tuple[HubSide, Pd]]:
    hub_key = Ed25519PrivateKey.generate()
    bus = PdBus()
    key = os.urandom(16)
    write_scbk_file(tmp_path / "minheim" / "eingang.scbk", key)
    layout = default_layout()
    layout["readers"][0] = {"id": "eingang-osdp", "type": "osdp", "door": "eingang", "port": bus.port,
                            "baudrate": 115200, "address": 3, "scbk_file": "eingang.scbk"}
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key, layout=layout)
    hub = HubSide(broker, hub_key, site.site)
    pd = bus.add(3, key)
    try:
        with agent_in_thread(site):
            hub.wait_online()
            now = int(time.time())
            hub.send(Kind.CACHE, hub.body_full([
                entry(site.cred_key, f"wiegand26:{MEMBER:06X}", ["eingang"], ref=None, who="m-caretaker",
                      start=now - 600, end=now + 3600),
            ]))
            assert hub.cache_ack().ok
            yield hub, pd
    finally:
        hub.close()
        bus.close()


def test_an_osdp_reader_is_announced_online_and_a_grant_shows_green_on_it(osdp_site: Any, mock_pins: Any) -> None:
    hub, pd = osdp_site
    ev = hub.wait_event(lambda e: e.type == "reader.online")
    assert ev.reader == "eingang-osdp"  # type: ignore[attr-defined]
    pd.card(26, wiegand_frame(26, MEMBER))
    granted = hub.wait_event(lambda e: e.type == "access.granted")
    assert granted.door == "eingang"  # type: ignore[attr-defined]
    assert mock_pins.pin(LOCK_EINGANG).state == 1
    wait_for(lambda: any(c["command"] == Command.LED for c in pd.commands), timeout=5, what="LED command")
    led = next(c for c in pd.commands if c["command"] == Command.LED)
    assert led["on_color"] == CommandLEDColor.Green
    wait_for(lambda: any(c["command"] == Command.Buzzer for c in pd.commands), timeout=5, what="buzzer")


def test_a_denial_shows_red_on_the_osdp_reader(osdp_site: Any, mock_pins: Any) -> None:
    hub, pd = osdp_site
    hub.wait_event(lambda e: e.type == "reader.online")
    pd.card(26, wiegand_frame(26, STRANGER))
    denied = hub.wait_event(lambda e: e.type == "access.denied")
    assert denied.reason == "unknown_credential"  # type: ignore[attr-defined]
    assert mock_pins.pin(LOCK_EINGANG).state == 0
    wait_for(lambda: any(c["command"] == Command.LED for c in pd.commands), timeout=5, what="LED command")
    led = next(c for c in pd.commands if c["command"] == Command.LED)
    assert led["on_color"] == CommandLEDColor.Red


def test_an_osdp_reader_going_silent_and_tampered_is_reported_to_the_hub(osdp_site: Any) -> None:
    hub, pd = osdp_site
    hub.wait_event(lambda e: e.type == "reader.online")
    pd.tamper()
    assert hub.wait_event(lambda e: e.type == "reader.tamper").reader == "eingang-osdp"  # type: ignore[attr-defined]
    pd.stop()
    assert hub.wait_event(lambda e: e.type == "reader.offline").reader == "eingang-osdp"  # type: ignore[attr-defined]
    n = max(e.seq for e in hub.events)
    pd.start()
    hub.wait_event(lambda e: e.type == "reader.online" and e.seq > n)
