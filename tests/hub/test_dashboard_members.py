"""A member's data from the dashboard (admins only): ``GET /api/v1/members/{member}/export``
and ``POST /api/v1/members/{member}/erase`` against the running hub and a real Mosquitto.
Caretakers are refused (403), an unknown member is 404 and changes nothing, and after an
erasure the running hub has published the site's new retained cache without the member."""

from __future__ import annotations

import msgspec
import pytest

from hub.__main__ import main as hub_main
from testkit.credscan import CredentialScanner, envelope_body
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic

from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)

CARD = "em4100:0C1D2E3F4A"
NAME, EMAIL = "Gerlinde Löschbar", "gerlinde@example.org"


def _retained_full(env: Env, site: str) -> m.CacheFull:
    mq = env.hub.service.cfg.mqtt
    with TestClient(mq.host, mq.effective_port) as c:
        c.subscribe(topic(site, Kind.CACHE))
        msg = c.expect(topic(site, Kind.CACHE), timeout=10)
    body = envelope_body(msg.payload)
    assert body is not None
    return msgspec.json.decode(body, type=m.CacheFull)


def test_admins_export_and_erase_a_member_caretakers_may_not(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(env.county.hub_config_path)
    assert hub_main(["cards", "add", "m-9", CARD, "--name", NAME, "--email", EMAIL, "--config", cfg]) == 0
    assert hub_main(["grants", "add", "m-9", "minheim", "--config", cfg]) == 0
    capsys.readouterr()
    svc = env.hub.service
    who = svc.call(lambda: svc.store.get_member("m-9")).who  # type: ignore[union-attr]
    wait_for(lambda: any(e.who == who for e in _retained_full(env, "minheim").entries), 20,
             what="the running hub published minheim's cache with the member")

    boss, anna = env.login("boss"), env.login("anna")
    url = env.url + "/api/v1/members/{}/{}"
    # Caretakers may do neither; unknown members are 404; nothing changed by any of it.
    assert anna.get(url.format("m-9", "export"), timeout=10).status_code == 403
    assert anna.post(url.format("m-9", "erase"), timeout=10).status_code == 403
    r = boss.get(url.format("nobody", "export"), timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": "no member 'nobody'"})
    assert boss.post(url.format("nobody", "erase"), timeout=10).status_code == 404
    # Without the CSRF token the erasure is refused before it runs.
    bare = env.login("boss")
    del bare.headers["X-CSRF-Token"]
    assert bare.post(url.format("m-9", "erase"), timeout=10).status_code == 403
    assert svc.call(lambda: svc.store.get_member("m-9")) is not None

    r = boss.get(url.format("m-9", "export"), timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert (doc["member"]["name"], doc["member"]["email"], doc["member"]["pseudonym"]) == (NAME, EMAIL, who)
    assert [c["type"] for c in doc["credentials"]] == ["em4100"]
    assert doc["site_caches"] == [{"site": "minheim", "entries": 1}]
    assert CredentialScanner([CARD]).scan("export", r.content, "export") == 0

    r = boss.post(url.format("m-9", "erase"), timeout=10)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["member"] == "m-9"
    assert done["deleted"]["credentials"] == 1 and done["deleted"]["grants"] == 1
    assert list(done["sites"]) == ["minheim"]
    full = _retained_full(env, "minheim")
    assert full.version == done["sites"]["minheim"]
    assert all(e.who != who for e in full.entries)
    scan = CredentialScanner([CARD], words=[NAME, EMAIL, who])
    assert scan.scan("cache.full", msgspec.json.encode(full), "cache") == 0
    assert svc.call(lambda: svc.store.get_member("m-9")) is None
    assert svc.call(lambda: svc.store.get_member("m-1")) is not None  # the others stay
    assert boss.get(url.format("m-9", "export"), timeout=10).status_code == 404
