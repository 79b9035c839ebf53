"""The dashboard's login rate limit lives in the hub's store: a restart of the hub does not
give someone guessing a password a fresh budget, and old failures are forgotten."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from hub.dashboard.auth import Auth
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.dashboard import add_user, login_form
from tests.hub.store_contract import store_url_fixture  # noqa: F401


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


def test_a_parallel_burst_of_logins_gets_no_more_password_checks_than_the_limit(tmp_path: Path) -> None:
    """50 logins for one name at once, the right password among them: the budget is taken
    before each password is checked, so at most USER_LIMIT wrong passwords are checked
    (a 401 each); every other attempt is answered 429 without a check."""
    n, right = 50, 37
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
        password = add_user(county, "carl", "caretaker", "minheim")
        with HubThread(county):
            url = county.http_url
            forms = [login_form(url) for _ in range(n)]
            start = threading.Barrier(n)

            def attempt_at_once(i: int) -> requests.Response:
                s, token = forms[i]
                start.wait(30)
                return s.post(url + "/login", timeout=60, allow_redirects=False, data={
                    "name": "carl", "password": password if i == right else f"wrong-{i}", "csrf": token})

            with ThreadPoolExecutor(n) as pool:
                answers = [r.status_code for r in pool.map(attempt_at_once, range(n))]
            assert set(answers) <= {401, 429, 303}, answers
            checked = [a for a in answers if a != 429]
            assert answers.count(401) <= Auth.USER_LIMIT, f"{len(checked)} passwords checked: {answers}"
            assert len(checked) <= Auth.USER_LIMIT + (answers[right] == 303)
            if answers[right] == 429:  # the right password came after the budget: no session
                assert "torwart_session" not in forms[right][0].cookies
            if answers.count(401) == Auth.USER_LIMIT:  # the budget is spent: the right one waits too
                assert attempt(url, "carl", password).status_code == 429


def test_failures_outside_the_window_are_forgotten(store_url: str) -> None:
    with open_store(store_url) as store:
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


def test_a_reserved_attempt_counts_until_it_is_given_back(store_url: str) -> None:
    limits = [("user:carl", 2), ("ip:10.0.0.7", 3)]
    with open_store(store_url) as store:
        first = store.reserve_login_attempt(limits, at=100.0, window=60.0)
        second = store.reserve_login_attempt(limits, at=110.0, window=60.0)
        assert first.wait is None and second.wait is None and len(first.ids) == 2
        assert store.reserve_login_attempt(limits, at=120.0, window=60.0).wait == 40.0  # carl's budget is spent
        store.release_login_attempt(second.ids)  # that one logged in
        assert store.reserve_login_attempt(limits, at=120.0, window=60.0).wait is None
        assert store.recent_login_failures("ip:10.0.0.7", since=0, limit=10) == [120.0, 100.0]
        assert store.reserve_login_attempt(limits, at=161.0, window=60.0).wait is None  # 100 left the window
