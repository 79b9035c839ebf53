"""The ``[homeassistant]`` section of hub.toml (hub.config loads it with the rest):
discovery (hub/homeassistant.py) and, with ``control``, locks and a lockdown switch that
Home Assistant operates through the hub (hub/ha_control.py)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from .errors import ConfigError

#: Home Assistant's request topics (hub/ha_control.py), outside every site's.
HA_ROOT = "torwart-ha/v1"

class HomeAssistantSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Publish Home Assistant MQTT discovery configs (retained) for every room and door.
    enabled: bool = False
    prefix: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]+$")] = "homeassistant"
    #: Also offer a lock per door and a lockdown switch per site (hub/ha_control.py):
    #: Home Assistant asks, the hub checks and signs.
    control: bool = False
    #: The dashboard user whose permissions Home Assistant's requests carry (required
    #: with ``control``): a caretaker's sites and acts, or an admin's.
    user: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    #: A request older (or further ahead) than this, by the time Home Assistant put in
    #: it, is refused: nothing queued during an outage opens a door later.
    max_age_seconds: Annotated[int, Meta(ge=5, le=600)] = 30
    #: Home Assistant's broker login (``torwart-hub homeassistant init``); no site may
    #: have this id.
    broker_user: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")] = "homeassistant"

    def check(self, f: str, site_ids: list[str]) -> None:
        """ConfigError (file ``f``) for settings that contradict each other or the sites."""
        if self.control and not self.enabled:
            raise ConfigError(f, "homeassistant.control", "needs enabled = true (discovery announces the entities)")
        if self.control and self.user is None:
            raise ConfigError(f, "homeassistant.user", "control needs the dashboard user whose permissions "
                              "Home Assistant's requests carry")
        if self.enabled and self.broker_user in site_ids:
            raise ConfigError(f, "homeassistant.broker_user", f"{self.broker_user!r} is a site's id: the broker "
                              "ACL would give Home Assistant that site's topics")
