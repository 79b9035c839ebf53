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

from .config import HubConfig, SiteConfig

log = logging.getLogger(__name__)


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
