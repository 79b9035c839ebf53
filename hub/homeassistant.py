"""Home Assistant MQTT discovery (optional, ``[homeassistant] enabled = true``).

The hub publishes retained discovery configs so that a caretaker's Home Assistant shows
the hall without any YAML: per room an occupancy sensor, per door a door sensor, a lock
sensor and an alarm sensor, all reading the sites' own retained topics (PROTOCOL.md §4)
and available while the site's status says online. Home Assistant needs a broker login
that may read ``torwart/v1/site/#`` and ``homeassistant/#``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from wire.topics import Kind, topic

from . import ha_control
from .config import HubConfig, SiteConfig

log = logging.getLogger(__name__)

#: A discovery config: (its topic, the config).
Announced = tuple[str, dict[str, Any]]


def _device(site: SiteConfig) -> dict[str, Any]:
    return {"identifiers": [f"torwart_{site.id}"], "name": site.name or site.id, "manufacturer": "Torwart",
            "model": "site agent"}


def _availability(site: SiteConfig) -> dict[str, Any]:
    return {"availability_topic": topic(site.id, Kind.STATUS),
            "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}"}


def discovery(cfg: HubConfig, prefix: str = "homeassistant") -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config) for every room and door of every site."""
    out: list[tuple[str, dict[str, Any]]] = []
    for site in cfg.sites:
        dev, avail = _device(site), _availability(site)
        for room in site.rooms:
            uid = f"torwart_{site.id}_{room.id}_present"
            attrs = f"{{{{ {{'capacity': value_json.rooms['{room.id}'].capacity}} | tojson }}}}"
            out.append((f"{prefix}/sensor/{uid}/config", {
                "name": f"{room.name or room.id} present", "unique_id": uid, "object_id": uid,
                "state_topic": topic(site.id, Kind.OCCUPANCY),
                "value_template": f"{{{{ value_json.rooms['{room.id}'].present }}}}",
                "unit_of_measurement": "people", "state_class": "measurement", "icon": "mdi:account-group",
                "json_attributes_topic": topic(site.id, Kind.OCCUPANCY),
                "json_attributes_template": attrs,
                "device": dev, **avail,
            }))
        for door in site.doors:
            state = topic(site.id, Kind.DOOR, door)
            for kind, device_class, template in (
                ("open", "door", "{{ 'ON' if value_json.open else 'OFF' }}"),
                # Home Assistant's lock class: ON means unlocked.
                ("lock", "lock", "{{ 'OFF' if value_json.locked else 'ON' }}"),
                ("alarm", "problem", "{{ 'ON' if value_json.alarm else 'OFF' }}"),
            ):
                uid = f"torwart_{site.id}_{door}_{kind}"
                out.append((f"{prefix}/binary_sensor/{uid}/config", {
                    "name": f"{door} {kind}", "unique_id": uid, "object_id": uid, "device_class": device_class,
                    "state_topic": state, "value_template": template, "payload_on": "ON", "payload_off": "OFF",
                    "device": dev, **avail,
                }))
        if cfg.homeassistant.control:
            out += _controls(site, dev, avail, prefix)
    return out


def _controls(site: SiteConfig, dev: dict[str, Any], avail: dict[str, Any], prefix: str) -> list[Announced]:
    """A lock per door and a lockdown switch for the site, operated through the hub
    (hub/ha_control.py): the command topics are the hub's, the states the site's own."""
    out: list[Announced] = []
    for door in site.doors:
        uid = f"torwart_{site.id}_{door}_door_lock"
        out.append((f"{prefix}/lock/{uid}/config", {
            "name": door, "unique_id": uid, "object_id": uid,
            "command_topic": ha_control.door_topic(site.id, door), "command_template": ha_control.COMMAND_TEMPLATE,
            "payload_lock": "LOCK", "payload_unlock": "UNLOCK", "payload_open": "OPEN",
            "state_topic": topic(site.id, Kind.DOOR, door),
            "value_template": "{{ 'LOCKED' if value_json.locked else 'UNLOCKED' }}",
            "state_locked": "LOCKED", "state_unlocked": "UNLOCKED", "retain": False, "qos": 1,
            "device": dev, **avail,
        }))
    uid = f"torwart_{site.id}_lockdown"
    out.append((f"{prefix}/switch/{uid}/config", {
        "name": "lockdown", "unique_id": uid, "object_id": uid, "icon": "mdi:shield-lock",
        "command_topic": ha_control.lockdown_topic(site.id), "command_template": ha_control.COMMAND_TEMPLATE,
        "payload_on": "ON", "payload_off": "OFF", "state_topic": topic(site.id, Kind.STATUS),
        "value_template": "{{ 'ON' if value_json.lockdown else 'OFF' }}", "state_on": "ON", "state_off": "OFF",
        "retain": False, "qos": 1, "device": dev, **avail,
    }))
    return out


def publish(cfg: HubConfig, publish_topic: Any) -> int:
    """Publish every discovery config retained; ``publish_topic(name, payload, retain=True)``."""
    if not cfg.homeassistant.enabled:
        return 0
    configs = discovery(cfg, cfg.homeassistant.prefix)
    for name, doc in configs:
        publish_topic(name, json.dumps(doc).encode(), retain=True)
    log.info("published %d Home Assistant discovery configs", len(configs))
    return len(configs)
