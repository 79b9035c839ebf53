"""Home Assistant discovery: retained configs for every room and door whose templates,
rendered as Home Assistant renders them (Jinja, ``value_json``), give the right states
from what a real site publishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from hub import config as hub_config
from hub import homeassistant
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import messages as m


def render(template: str, payload: bytes) -> str:
    return jinja2.Environment(autoescape=False).from_string(template).render(value_json=json.loads(payload)).strip()


def test_discovery_templates_read_the_sites_own_messages(tmp_path: Path, broker: Mosquitto,
                                                         booking_platform: BookingPlatform) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",))
    cfg = hub_config.load(county.hub_config_path)
    configs = dict(homeassistant.discovery(cfg))
    room = configs["homeassistant/sensor/torwart_minheim_coworking_present/config"]
    occ = m.encode(m.Occupancy(ts=1.0, rooms={"coworking": m.RoomOccupancy(present=3, capacity=8, who=[])}))
    assert room["state_topic"] == "torwart/v1/site/minheim/occupancy"
    assert render(room["value_template"], occ) == "3"
    assert json.loads(render(room["json_attributes_template"], occ)) == {"capacity": 8}
    online = m.encode(m.Status(state="online", ts=1.0))
    offline = m.encode(m.Status(state="offline"))
    assert render(room["availability_template"], online) == "online"
    assert render(room["availability_template"], offline) == "offline"

    door = m.encode(m.DoorState(door="eingang", locked=False, open=True, alarm="held_open", mode="normal", ts=1.0))
    shut = m.encode(m.DoorState(door="eingang", locked=True, open=False, alarm=None, mode="normal", ts=1.0))
    for kind, when_door, when_shut in (("open", "ON", "OFF"), ("lock", "ON", "OFF"), ("alarm", "ON", "OFF")):
        c = configs[f"homeassistant/binary_sensor/torwart_minheim_eingang_{kind}/config"]
        assert c["state_topic"] == "torwart/v1/site/minheim/door/eingang"
        assert (render(c["value_template"], door), render(c["value_template"], shut)) == (when_door, when_shut)
    assert all(c["device"]["identifiers"] == ["torwart_minheim"] for c in configs.values())


def test_the_running_hub_publishes_discovery_retained_when_enabled(tmp_path: Path, broker: Mosquitto,
                                                                   booking_platform: BookingPlatform) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",))
    base = hub_config.load(county.hub_config_path)
    cfg = msgspec.structs.replace(base, homeassistant=hub_config.HomeAssistantSection(enabled=True))
    with HubThread(county, cfg) as hub:
        wait_for(lambda: hub.service.link.connected, 20, what="hub connected")
        expected = {t for t, _ in homeassistant.discovery(cfg)}
        assert len(expected) == 1 + 2 * 3  # a room; two doors with open/lock/alarm
        live = TestClient(broker.host, broker.port)
        try:
            live.subscribe("homeassistant/#")
            seen: dict[str, Any] = {}

            def all_seen(client: TestClient) -> bool:
                for msg in client.drain():
                    seen[msg.topic] = (msg.retain, json.loads(msg.payload))
                return set(seen) == expected

            wait_for(lambda: all_seen(live), 20, what="every discovery config")
            # Home Assistant starting later still finds every config: they are retained.
            seen.clear()
            later = TestClient(broker.host, broker.port)
            try:
                later.subscribe("homeassistant/#")
                wait_for(lambda: all_seen(later), 20, what="every discovery config, retained")
                assert all(retained for retained, _ in seen.values())
            finally:
                later.close()
        finally:
            live.close()
