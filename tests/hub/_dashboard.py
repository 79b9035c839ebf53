"""A county with a running hub and dashboard accounts, shared by the dashboard's HTTP
tests (one per test module): two sites (``wittlich`` shows names to caretakers), an admin
and three caretakers with generated passwords, and an MQTT client that plays the sites."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import tomli_w

from hub.dashboard.auth import Auth
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.dashboard import add_user, login
from testkit.mqttclient import TestClient
from wire import messages as m
from wire.topics import Kind, topic

USERS = {"boss": ("admin", None), "anna": ("caretaker", "minheim"), "ben": ("caretaker", "wittlich"),
         "carl": ("caretaker", "minheim")}


@dataclass
class Env:
    county: County
    hub: HubThread
    passwords: dict[str, str]
    site: TestClient
    who: str
    platform: BookingPlatform

    @property
    def url(self) -> str:
        return self.county.http_url

    @property
    def auth(self) -> Auth:
        auth: Auth = self.hub.service.web.app.state.auth
        return auth

    def login(self, name: str) -> requests.Session:
        return login(self.url, name, self.passwords[name])

    def occupancy(self, site: str, present: int, who: list[str] | None = None) -> None:
        occ = m.Occupancy(ts=time.time(), rooms={"coworking": m.RoomOccupancy(present=present, capacity=8,
                                                                             who=who or [])})
        self.site.publish(topic(site, Kind.OCCUPANCY), m.encode(occ), retain=True)


def show_names(county: County, site: str) -> None:
    doc = tomllib.loads(county.hub_config_path.read_text())
    for s in doc["sites"]:
        if s["id"] == site:
            s["show_names"] = True
    county.hub_config_path.write_text(tomli_w.dumps(doc))


@pytest.fixture(scope="module", name="env")
def env_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d: Path = tmp_path_factory.mktemp("dashboard")
    with Mosquitto(d / "broker") as broker, BookingPlatform(page_size=50) as platform:
        county = make_county(d, broker, platform, ("minheim", "wittlich"))
        show_names(county, "wittlich")
        passwords = {name: add_user(county, name, role, sites) for name, (role, sites) in USERS.items()}
        with open_store(county.store_url) as store:
            who = store.add_member("m-1", "Anna Beispiel", "anna@example.org").who
        with HubThread(county) as hub:
            site = TestClient(broker.host, broker.port)
            try:
                yield Env(county, hub, passwords, site, who, platform)
            finally:
                site.close()


@pytest.fixture(name="auth")
def auth_fixture(env: Env) -> Iterator[Auth]:
    """The hub's Auth; its clock and rate limits are reset after the test."""
    a = env.auth
    try:
        yield a
    finally:
        a.clock = time.time
        a.service.call(a.service.accounts.clear_login_failures)
