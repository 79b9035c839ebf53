"""Alerts in the dashboard over real HTTP against a running hub: the list per site and for
the county (filters; caretakers see their sites only), acknowledging (CSRF, permission, the
first acknowledgement stands), the pages' one-tap form, the live stream's ``view=alerts``,
and each user's settings (page and API; bad input refused with nothing changed)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import tomli_w

from hub.store import AlertPrefs, Store, open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.dashboard import add_user, login
from testkit.smtpsink import SmtpSink

USERS = {"boss": ("admin", None), "anna": ("caretaker", "minheim"), "ben": ("caretaker", "wittlich")}


@dataclass
class Env:
    county: County
    hub: HubThread
    passwords: dict[str, str]
    smtp: SmtpSink

    @property
    def url(self) -> str:
        return self.county.http_url

    def login(self, name: str) -> requests.Session:
        return login(self.url, name, self.passwords[name])

    def store(self) -> Store:
        return open_store(self.county.store_url)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d: Path = tmp_path_factory.mktemp("alerts-dashboard")
    with Mosquitto(d / "broker") as broker, BookingPlatform(page_size=50) as platform, SmtpSink() as smtp:
        smtp.start()
        county = make_county(d, broker, platform, ("minheim", "wittlich"))
        doc = tomllib.loads(county.hub_config_path.read_text())
        doc["alerts"] = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False,
                         "from": "torwart@example.org"}
        county.hub_config_path.write_text(tomli_w.dumps(doc))
        passwords = {name: add_user(county, name, role, sites) for name, (role, sites) in USERS.items()}
        with HubThread(county) as hub:
            yield Env(county, hub, passwords, smtp)


def _open(env: Env, site: str, kind: str, subject: str) -> int:
    with env.store() as store:
        a = store.open_alert(site, kind, subject, at=1_000_000.0, detail=None, mails=[])
        assert a is not None
        return a


def _alert(env: Env, alert_id: int) -> tuple[str | None, float | None]:
    with env.store() as store:
        a = store.get_alert(alert_id)
        assert a is not None
        return a.acked_by, a.acked_at


def test_caretakers_list_their_sites_alerts_and_admins_every_one_with_filters(env: Env) -> None:
    m1 = _open(env, "minheim", "door_forced", "eingang")
    w1 = _open(env, "wittlich", "reader_tamper", "r1")
    h1 = _open(env, "", "sync_failing", "")
    anna, boss = env.login("anna"), env.login("boss")
    mine = anna.get(env.url + "/api/v1/alerts", timeout=10).json()
    assert m1 in [a["id"] for a in mine] and not {w1, h1} & {a["id"] for a in mine}
    assert {a["site"] for a in mine} == {"minheim"}
    assert anna.get(env.url + "/api/v1/alerts?site=wittlich", timeout=10).status_code == 404
    assert anna.post(env.url + f"/api/v1/alerts/{h1}/ack", timeout=10).status_code == 404  # the hub's own
    every = {a["id"] for a in boss.get(env.url + "/api/v1/alerts", timeout=10).json()}
    assert {m1, w1, h1} <= every
    only = boss.get(env.url + "/api/v1/alerts", params={"kind": "reader_tamper", "state": "open"}, timeout=10).json()
    assert [a["id"] for a in only] == [w1] and only[0]["urgent"] and only[0]["open"]
    for bad in ({"state": "maybe"}, {"limit": "0"}, {"kind": "fire"}, {"since": "yesterday"}):
        r = boss.get(env.url + "/api/v1/alerts", params=bad, timeout=10)
        assert r.status_code == 400, bad
        assert next(iter(bad)) in r.json()["error"]


def test_an_alert_is_acknowledged_with_the_csrf_token_by_someone_who_sees_its_site_once(env: Env) -> None:
    m1 = _open(env, "minheim", "door_held", "eingang")
    w1 = _open(env, "wittlich", "door_held", "eingang")
    anna, boss = env.login("anna"), env.login("boss")
    no_csrf = requests.post(env.url + f"/api/v1/alerts/{m1}/ack", cookies=anna.cookies, timeout=10)
    assert no_csrf.status_code == 403
    assert anna.post(env.url + f"/api/v1/alerts/{w1}/ack", timeout=10).status_code == 404  # another site's
    assert anna.post(env.url + "/api/v1/alerts/abc/ack", timeout=10).status_code == 404
    assert anna.post(env.url + "/api/v1/alerts/999999/ack", timeout=10).status_code == 404
    assert _alert(env, m1) == (None, None) and _alert(env, w1) == (None, None)
    r = anna.post(env.url + f"/api/v1/alerts/{m1}/ack", timeout=10)
    assert r.status_code == 200 and r.json()["acked_by"] == "anna" and r.json()["open"]
    again = boss.post(env.url + f"/api/v1/alerts/{m1}/ack", timeout=10)
    assert again.status_code == 200 and again.json()["acked_by"] == "anna"
    token = requests.post(env.url + f"/api/v1/alerts/{w1}/ack", timeout=10,
                          headers={"Authorization": f"Bearer {env.county.admin_token}"})
    assert token.status_code == 200 and token.json()["acked_by"] == "api-token"


def test_the_pages_show_alerts_and_acknowledge_with_one_form_post(env: Env) -> None:
    m1 = _open(env, "minheim", "reader_error", "r9")
    anna = env.login("anna")
    page = anna.get(env.url + "/sites/minheim", timeout=10)
    assert page.status_code == 200 and f'action="/alerts/{m1}/ack"' in page.text and "Fehler am Leser r9" in page.text
    county = anna.get(env.url + "/alerts", timeout=10)
    assert f'action="/alerts/{m1}/ack"' in county.text and "Site wittlich" not in county.text
    assert anna.get(env.url + "/alerts?site=wittlich", timeout=10).status_code == 404
    assert anna.get(env.url + "/alerts?state=maybe", timeout=10).status_code == 400
    # The filter form as a browser sends it ("every site", "every kind"): the same list.
    every = anna.get(env.url + "/alerts?site=&kind=&state=all", timeout=10)
    assert every.status_code == 200 and f'action="/alerts/{m1}/ack"' in every.text
    assert f'data-alert="{m1}"' not in anna.get(env.url + "/alerts?kind=door_forced", timeout=10).text
    assert requests.post(env.url + f"/alerts/{m1}/ack", cookies=anna.cookies, data={"next": "/sites/minheim"},
                         allow_redirects=False, timeout=10).status_code == 403
    assert _alert(env, m1) == (None, None)
    r = anna.post(env.url + f"/alerts/{m1}/ack", data={"csrf": anna.headers["X-CSRF-Token"],
                                                       "next": "https://evil.example/"},
                  allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    assert _alert(env, m1)[0] == "anna"
    after = anna.get(env.url + "/sites/minheim", timeout=10).text
    assert "Bestätigt von anna" in after


def test_the_live_stream_sends_a_sites_part_of_the_alerts_page(env: Env) -> None:
    m1 = _open(env, "minheim", "storage_error", "")
    other = _open(env, "minheim", "cache_stale", "")
    anna = env.login("anna")
    with anna.get(env.url + "/api/v1/live", params={"view": "alerts", "site": "minheim", "state": "open",
                                                    "kind": "storage_error"},
                  stream=True, timeout=10) as r:
        assert r.status_code == 200
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                doc = json.loads(line[6:])
                break
    assert doc["site"] == "minheim" and f'data-alert="{m1}"' in doc["html"]
    assert f'data-alert="{other}"' not in doc["html"]  # another kind: filtered out
    assert f'action="/alerts/{m1}/ack"' in doc["html"] and anna.headers["X-CSRF-Token"] in doc["html"]


def test_users_set_their_own_alert_settings_and_bad_ones_change_nothing(env: Env) -> None:
    ben = env.login("ben")
    got = ben.get(env.url + "/api/v1/me/alerts", timeout=10).json()
    assert got == {"user": "ben", "email": None, "lang": "de", "kinds": None, "channels": ["email"], "quiet": ""}
    good = {"lang": "en", "kinds": ["door_forced", "site_offline"], "channels": ["email"], "quiet": "22:00-06:00"}
    r = ben.post(env.url + "/api/v1/me/alerts", json=good, timeout=10)
    assert r.status_code == 200 and r.json() == {"user": "ben", "email": None, **good}
    for bad in ({"quiet": "25:00-06:00"}, {"kinds": ["fire"]}, {"channels": ["sms"]}, {"lang": "fr"},
                {"colour": "red"}, {"email": "ben at home"}):
        assert ben.post(env.url + "/api/v1/me/alerts", json=bad, timeout=10).status_code == 400, bad
    with env.store() as store:
        assert store.get_alert_prefs("ben") == AlertPrefs(user="ben", lang="en", kinds=("door_forced", "site_offline"),
                                                          quiet_start=1320, quiet_end=360)
    token = requests.get(env.url + "/api/v1/me/alerts", timeout=10,
                         headers={"Authorization": f"Bearer {env.county.admin_token}"})
    assert token.status_code == 403
    # The page's form: a bad quiet time is shown and changes nothing; a good form is stored.
    csrf = ben.headers["X-CSRF-Token"]
    form = ben.get(env.url + "/settings/alerts", timeout=10)
    assert form.status_code == 200 and 'value="22:00-06:00"' in form.text
    r = ben.post(env.url + "/settings/alerts", data={"csrf": csrf, "lang": "de", "kinds": ["door_forced"],
                                                     "channels": ["email"], "quiet": "7-8"}, timeout=10)
    assert r.status_code == 400 and "HH:MM-HH:MM" in r.text
    with env.store() as store:
        assert store.get_alert_prefs("ben").quiet_start == 1320
    r = ben.post(env.url + "/settings/alerts", data={"csrf": csrf, "lang": "de", "kinds": ["door_forced"],
                                                     "channels": ["email"], "email": "ben@"}, timeout=10)
    assert r.status_code == 400 and "not an e-mail address" in r.text
    with env.store() as store:
        assert store.get_alert_prefs("ben").kinds == ("door_forced", "site_offline")  # as the API set it
        assert (u := store.get_user("ben")) is not None and u.email is None
    r = ben.post(env.url + "/settings/alerts", data={"csrf": csrf, "lang": "de", "kinds": ["door_forced", "lockdown"],
                                                     "channels": ["email"], "quiet": "", "email": "ben@example.org"},
                 allow_redirects=False, timeout=10)
    assert r.status_code == 303
    with env.store() as store:
        assert store.get_alert_prefs("ben") == AlertPrefs(user="ben", kinds=("door_forced", "lockdown"))
        user = store.get_user("ben")
        assert user is not None and user.email == "ben@example.org"
    r = ben.post(env.url + "/api/v1/me/alerts", json={"email": ""}, timeout=10)
    assert r.status_code == 200 and r.json()["email"] is None
