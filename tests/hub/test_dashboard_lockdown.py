"""A lockdown holds against the hub's own remote unlock: the dashboard (form and API, admins
too) and ``torwart-hub unlock`` refuse an unlock at a site whose retained Status reports a
lockdown, nothing is sent to the site, and only an admin may end the lockdown. A remote
unlock lasts an hour at most, however it is asked for."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from hub.__main__ import main as hub_main
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic

from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)


def set_lockdown(env: Env, site: str, on: bool) -> None:
    """Play the site: publish its retained Status, then wait until the hub has stored it."""
    status = m.Status(state="online", ts=time.time(), boot="b", software="test", lockdown=on, clock_synced=True)
    env.site.publish(topic(site, Kind.STATUS), m.encode(status), retain=True)

    def stored() -> bool:
        st = env.hub.service.call(lambda: env.hub.service.store.site_state(site))
        return st is not None and st.lockdown == on

    wait_for(stored, 10, what=f"lockdown={on} stored for {site}")


def command_body(payload: bytes) -> dict[str, Any]:
    env = json.loads(payload)
    body = base64.b64decode(env["body"])
    doc: dict[str, Any] = json.loads(gzip.decompress(body) if env["enc"] == "json+gzip" else body)
    return doc


@pytest.fixture(name="commands")
def commands_fixture(env: Env) -> Iterator[TestClient]:
    """A subscriber to minheim's command topic that has seen every command an earlier test
    made the hub send (the hub publishes in order: a marker from its own link comes after
    them); the site is out of lockdown afterwards."""
    mqtt = env.hub.service.cfg.mqtt
    client = TestClient(mqtt.host, mqtt.port or 1883)
    client.subscribe(topic("minheim", Kind.COMMAND))
    marker = f"barrier-{uuid.uuid4().hex}".encode()
    assert env.hub.service.link.publish_topic(topic("minheim", Kind.COMMAND), marker)
    while client.expect(topic("minheim", Kind.COMMAND), timeout=10).payload != marker:
        pass  # sent for an earlier test, reaching this subscriber late
    try:
        yield client
    finally:
        client.close()
        set_lockdown(env, "minheim", False)


def test_a_remote_unlock_is_refused_while_the_site_is_in_lockdown(env: Env, commands: TestClient) -> None:
    set_lockdown(env, "minheim", True)
    url = env.url + "/api/v1/sites/minheim/commands"
    unlock = {"action": "unlock", "door": "eingang", "seconds": 5}
    bearer = {"Authorization": f"Bearer {env.county.admin_token}"}
    boss, anna = env.login("boss"), env.login("anna")
    for who, r in (("admin token", requests.post(url, json=unlock, headers=bearer, timeout=10)),
                   ("admin session", boss.post(url, json=unlock, timeout=10)),
                   ("caretaker session", anna.post(url, json=unlock, timeout=10))):
        assert r.status_code == 409, who
        assert "lockdown" in r.json()["error"], who
    # The form, its first and its confirmed step: back to the site's page with the reason, nothing sent.
    form = {"csrf": str(anna.headers["X-CSRF-Token"]), "action": "unlock", "door": "eingang", "seconds": "5"}
    for confirmed in ("", "1"):
        r = anna.post(env.url + "/sites/minheim/actions", data={**form, "confirmed": confirmed},
                      allow_redirects=False, timeout=10)
        assert r.status_code == 303 and "failed=" in r.headers["location"] and "lockdown" in r.headers["location"]
    # Another site is not affected, and once the lockdown ends the unlock goes out again.
    assert requests.post(env.url + "/api/v1/sites/wittlich/commands", json=unlock, headers=bearer,
                         timeout=10).status_code == 202
    set_lockdown(env, "minheim", False)
    r = anna.post(url, json=unlock, timeout=10)
    assert r.status_code == 202
    # The first command the site saw is that last unlock: none of the refused ones was sent.
    first = command_body(commands.expect(topic("minheim", Kind.COMMAND), timeout=10).payload)
    assert (first["action"], first["id"]) == ("unlock", r.json()["id"])


def test_a_caretaker_cannot_end_a_lockdown_by_form_or_api(env: Env, commands: TestClient) -> None:
    set_lockdown(env, "minheim", True)
    anna = env.login("anna")
    csrf = str(anna.headers["X-CSRF-Token"])
    r = anna.post(env.url + "/api/v1/sites/minheim/commands", json={"action": "lockdown_end"}, timeout=10)
    assert r.status_code == 403
    for confirmed in ("", "1"):
        r = anna.post(env.url + "/sites/minheim/actions", allow_redirects=False, timeout=10,
                      data={"csrf": csrf, "action": "lockdown_end", "confirmed": confirmed})
        assert r.status_code == 403
    assert "lockdown_end" not in anna.get(env.url + "/api/v1/me", timeout=10).json()["actions"]
    # An admin may.
    r = env.login("boss").post(env.url + "/api/v1/sites/minheim/commands", json={"action": "lockdown_end"},
                               timeout=10)
    assert r.status_code == 202
    first = command_body(commands.expect(topic("minheim", Kind.COMMAND), timeout=10).payload)
    assert (first["action"], first["id"]) == ("lockdown_end", r.json()["id"])


@pytest.mark.parametrize(("seconds", "status"), [(3600, 202), (3601, 400), (86400, 400), (0, 400)])
def test_a_remote_unlock_lasts_an_hour_at_most(env: Env, seconds: int, status: int) -> None:
    r = requests.post(env.url + "/api/v1/sites/minheim/commands",
                      json={"action": "unlock", "door": "eingang", "seconds": seconds},
                      headers={"Authorization": f"Bearer {env.county.admin_token}"}, timeout=10)
    assert r.status_code == status
    if status == 400:
        assert "1..3600" in r.json()["error"]


def test_the_cli_refuses_an_unlock_while_the_store_says_lockdown(env: Env, commands: TestClient,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    set_lockdown(env, "minheim", True)
    rc = hub_main(["unlock", "minheim", "eingang", "--timeout", "3", "--config", str(env.county.hub_config_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "minheim is in lockdown" in err and "lockdown minheim --end" in err
    assert commands.drain() == []
    assert hub_main(["unlock", "minheim", "eingang", "--seconds", "86400",
                     "--config", str(env.county.hub_config_path)]) == 1
    assert "--seconds must be 1..3600" in capsys.readouterr().err
