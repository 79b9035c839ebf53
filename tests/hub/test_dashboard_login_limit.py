"""The dashboard's login rate limit lives in the hub's store: a restart of the hub does not
give someone guessing a password a fresh budget, and old failures are forgotten."""

from __future__ import annotations

from pathlib import Path

import requests

from hub.dashboard.auth import Auth
from hub.store import SqliteStore
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.dashboard import add_user, login_form


def attempt(url: str, name: str, password: str) -> requests.Response:
    s, token = login_form(url)
    return s.post(url + "/login", data={"name": name, "password": password, "csrf": token},
                  allow_redirects=False, timeout=10)


def test_the_login_rate_limit_survives_a_hub_restart(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
        password = add_user(county, "carl", "caretaker", "minheim")
        with HubThread(county):
            for _ in range(Auth.USER_LIMIT):
                assert attempt(county.http_url, "carl", "wrong-password").status_code == 401
        with HubThread(county):  # restarted: the failures are still counted
            r = attempt(county.http_url, "carl", password)
            assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60


def test_failures_outside_the_window_are_forgotten(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "hub.sqlite3") as store:
        store.record_login_failure(["user:carl", "ip:10.0.0.7"], at=100.0, forget_before=40.0)
        store.record_login_failure(["user:carl"], at=130.0, forget_before=70.0)
        assert store.recent_login_failures("user:carl", since=0, limit=10) == [130.0, 100.0]
        assert store.recent_login_failures("user:carl", since=0, limit=1) == [130.0]
        assert store.recent_login_failures("user:carl", since=100.0, limit=10) == [130.0]
        store.record_login_failure(["user:dora"], at=200.0, forget_before=140.0)  # 100 and 130 drop out
        assert store.recent_login_failures("user:carl", since=0, limit=10) == []
        assert store.recent_login_failures("ip:10.0.0.7", since=0, limit=10) == []
        store.clear_login_failures("user:dora")
        assert store.recent_login_failures("user:dora", since=0, limit=10) == []
