"""Home Assistant operates doors through the hub (hub/ha_control.py): as the attacker who
holds Home Assistant's broker login (or replays what it sent), and as time (a request
left retained or queued during an outage). Over a real Mosquitto and the real hub: the
hub signs and sends only what the configured dashboard user may do, refuses an unlock in
lockdown, and answers every request; the provisioned ACL lets Home Assistant's login
read the sites' state and write requests, nothing else."""

from __future__ import annotations

import datetime as dt
import json
import queue
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
import tomli_w

from hub import config as hub_config
from hub import ha_control, homeassistant, provision
from hub.config import MqttSection
from hub.ha_control import Refused, parse
from hub.link import HubLink
from hub.provision import homeassistant as ha_provision
from hub.provision import site as provision_site
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.dashboard import add_user
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from tests.hub.test_provision import hub_config as provision_hub_config
from wire import messages as m
from wire.envelope import open_body, trusted_keys
from wire.topics import ROOT, Kind, topic

NOW = 1_764_770_000.0
DOOR = ha_control.door_topic("minheim", "eingang")


def request(action: str, ts: float | None = None) -> bytes:
    return json.dumps({"action": action, "ts": int(time.time()) if ts is None else ts}).encode()


# --- what a request is ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "payload", "retained", "code"), [
    (DOOR, b'{"action": "UNLOCK", "ts": 1764770000}', True, "retained"),
    (DOOR, b'{"action": "UNLOCK", "ts": 1764769960}', False, "stale"),  # 40 s old: queued in an outage
    (DOOR, b'{"action": "UNLOCK", "ts": 1764770040}', False, "stale"),  # a clock 40 s ahead
    (DOOR, b'{"action": "UNLOCK"}', False, "bad_payload"),
    (DOOR, b'{"action": "UNLOCK", "ts": true}', False, "bad_payload"),
    (DOOR, b'{"action": "UNLOCK", "ts": "1764770000"}', False, "bad_payload"),
    (DOOR, b"UNLOCK", False, "bad_payload"),  # Home Assistant without the command template
    (DOOR, b"\xff\xfe", False, "bad_payload"),
    (DOOR, b'["UNLOCK", 1764770000]', False, "bad_payload"),
    (DOOR, b'{"action": "UNLOCK", "ts": 1764770000, "pad": "' + b"x" * 300 + b'"}', False, "bad_payload"),
    (DOOR, b'{"action": "LOCK", "ts": 1764770000}', False, "unsupported"),
    (DOOR, b'{"action": "UNLOCK", "ts": NaN}', False, "bad_payload"),  # Python's json reads NaN: never fresh
    (DOOR, b'{"action": "UNLOCK", "ts": Infinity}', False, "bad_payload"),
    (DOOR, b'{"action": "UNLOCK", "ts": 1' + b"0" * 400 + b'}', False, "bad_payload"),  # too large for a float
    (DOOR, b'{"action": "ON", "ts": 1764770000}', False, "bad_payload"),
    (ha_control.lockdown_topic("minheim"), b'{"action": "UNLOCK", "ts": 1764770000}', False, "bad_payload"),
    ("torwart-ha/v1/Minheim/door/eingang/set", b'{"action": "UNLOCK", "ts": 1764770000}', False, "bad_topic"),
    ("torwart-ha/v1/minheim/door/eingang/set/x", b'{"action": "UNLOCK", "ts": 1764770000}', False, "bad_topic"),
    (topic("minheim", Kind.COMMAND), b'{"action": "UNLOCK", "ts": 1764770000}', False, "bad_topic"),
])
def test_a_request_that_is_not_exactly_right_is_refused_with_its_reason(name: str, payload: bytes, retained: bool,
                                                                        code: str) -> None:
    with pytest.raises(Refused) as exc:
        parse(name, payload, retained=retained, now=NOW, max_age=30)
    assert exc.value.code == code
    assert str(exc.value)  # a reason a person can read


@pytest.mark.parametrize(("name", "word", "action", "door"), [
    (DOOR, "UNLOCK", "unlock", "eingang"),
    (DOOR, "open", "unlock", "eingang"),
    (ha_control.lockdown_topic("minheim"), "ON", "lockdown", None),
    (ha_control.lockdown_topic("minheim"), "OFF", "lockdown_end", None),
])
def test_what_home_assistant_sends_becomes_the_hubs_act(name: str, word: str, action: str, door: str | None) -> None:
    req = parse(name, request(word, NOW - 29), retained=False, now=NOW, max_age=30)
    assert (req.site, req.action, req.door) == ("minheim", action, door)


def test_the_discovered_command_template_renders_a_request_the_hub_accepts(tmp_path: Path) -> None:
    """The lock's and the switch's ``command_template``, rendered as Home Assistant renders
    it (Jinja with ``value`` and ``now()``), is a request ``parse`` takes."""
    county_cfg = _ha_county_config(tmp_path)
    configs = dict(homeassistant.discovery(county_cfg))
    lock = configs["homeassistant/lock/torwart_minheim_eingang_door_lock/config"]
    switch = configs["homeassistant/switch/torwart_minheim_lockdown/config"]
    assert lock["command_topic"] == DOOR and switch["command_topic"] == ha_control.lockdown_topic("minheim")
    env = jinja2.Environment(autoescape=False)
    for doc, word, action in ((lock, lock["payload_unlock"], "unlock"), (switch, switch["payload_on"], "lockdown")):
        payload = env.from_string(doc["command_template"]).render(value=word, now=lambda: dt.datetime.now(dt.UTC))
        req = parse(doc["command_topic"], payload.encode(), retained=False, now=time.time(), max_age=30)
        assert req.action == action
    # The lock's state comes from the site's own door topic.
    state = env.from_string(lock["value_template"])
    assert state.render(value_json={"locked": True}) == lock["state_locked"]
    assert state.render(value_json={"locked": False}) == lock["state_unlocked"]


def _ha_county_config(tmp_path: Path) -> hub_config.HubConfig:
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
    enable_control(county, "ha")
    return hub_config.load(county.hub_config_path)


def enable_control(county: County, user: str) -> None:
    doc = tomllib.loads(county.hub_config_path.read_text())
    doc["homeassistant"] = {"enabled": True, "control": True, "user": user, "max_age_seconds": 30}
    county.hub_config_path.write_text(tomli_w.dumps(doc))


@pytest.mark.parametrize(("section", "key"), [
    ({"enabled": True, "control": True}, "homeassistant.user"),
    ({"control": True, "user": "ha"}, "homeassistant.control"),
    ({"enabled": True, "broker_user": "minheim"}, "homeassistant.broker_user"),
])
def test_contradicting_settings_are_refused_naming_the_key(tmp_path: Path, section: dict[str, Any], key: str) -> None:
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
    doc = tomllib.loads(county.hub_config_path.read_text())
    doc["homeassistant"] = section
    county.hub_config_path.write_text(tomli_w.dumps(doc))
    with pytest.raises(hub_config.ConfigError) as exc:
        hub_config.load(county.hub_config_path)
    assert key in str(exc.value)


# --- the running hub ---------------------------------------------------------------------------------


@dataclass
class Rig:
    county: County
    hub: HubThread
    ha: TestClient
    site: TestClient

    def ask(self, name: str, payload: bytes, *, retain: bool = False) -> dict[str, Any]:
        """Publish as Home Assistant and return the hub's answer."""
        self.ha.publish(name, payload, retain=retain)
        msg = self.ha.expect(timeout=10)
        assert msg.topic == ha_control.result_topic(name.split("/")[2])
        answer: dict[str, Any] = json.loads(msg.payload)
        return answer

    def commands(self) -> list[m.Command]:
        """The commands the sites got: the first waited for, then whatever else is there
        (the hub handles requests in order, so every earlier one has been decided)."""
        keys = trusted_keys(self.county.hub_key.public_key())
        out = []
        for msg in [self.site.expect(timeout=10), *self.site.drain()]:
            site = msg.topic.split("/")[3]
            body = open_body(msg.payload, keys, site)  # signed by the hub, for that site
            assert isinstance(body, m.Command)
            out.append(body)
        return out

    def status(self, site: str, lockdown: bool) -> None:
        st = m.Status(state="online", ts=time.time(), boot="b", software="test", lockdown=lockdown, clock_synced=True)
        self.site.publish(topic(site, Kind.STATUS), m.encode(st), retain=True)
        svc = self.hub.service

        def stored() -> bool:
            state = svc.call(lambda: svc.store.site_state(site))
            return state is not None and state.lockdown == lockdown

        wait_for(stored, 10, what=f"lockdown={lockdown} stored for {site}")


@pytest.fixture(scope="module", name="rig")
def rig_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    d = tmp_path_factory.mktemp("ha")
    with Mosquitto(d / "broker") as broker, BookingPlatform() as platform:
        county = make_county(d, broker, platform, ("minheim", "wittlich"))
        enable_control(county, "ha")
        add_user(county, "ha", "caretaker", "minheim")
        with HubThread(county) as hub, TestClient(broker.host, broker.port) as ha, \
                TestClient(broker.host, broker.port) as site:
            wait_for(lambda: hub.service.link.connected, 10, what="the hub's link")
            ha.subscribe("torwart-ha/v1/+/result")
            site.subscribe(f"{ROOT}/+/command")
            yield Rig(county, hub, ha, site)


def test_an_unlock_from_home_assistant_is_signed_and_sent_by_the_hub(rig: Rig) -> None:
    answer = rig.ask(DOOR, request("UNLOCK"))
    assert answer["ok"] is True and answer["action"] == "unlock" and answer["door"] == "eingang"
    [cmd] = rig.commands()
    assert (cmd.site, cmd.action, cmd.door, cmd.id) == ("minheim", "unlock", "eingang", answer["command"])
    # The audit trail names the dashboard user Home Assistant acts as, and how.
    svc = rig.hub.service
    rows = svc.call(lambda: svc.hub.audit_log(site="minheim", since=None, until=None, limit=50))
    assert any((r.act, r.who, r.via, r.outcome, r.door) == ("unlock", "ha", "homeassistant", "ok", "eingang")
               for r in rows)


def test_home_assistant_gets_no_more_than_its_dashboard_user_may(rig: Rig) -> None:
    """The user is a caretaker of minheim: no door of wittlich, no lockdown; and nothing
    stale, retained, unknown or malformed is carried out. Each refusal is answered; the
    one good request at the end is the only command the sites see."""
    refusals = [
        (ha_control.door_topic("wittlich", "eingang"), request("UNLOCK"), False, "forbidden"),
        (ha_control.lockdown_topic("minheim"), request("ON"), False, "forbidden"),
        (DOOR, request("UNLOCK", time.time() - 3600), False, "stale"),
        (ha_control.door_topic("minheim", "keller"), request("UNLOCK"), False, "unknown_door"),
        (ha_control.door_topic("nirgendwo", "eingang"), request("UNLOCK"), False, "unknown_site"),
        (DOOR, b"UNLOCK", False, "bad_payload"),
    ]
    for name, payload, retain, code in refusals:
        answer = rig.ask(name, payload, retain=retain)
        assert answer == {"ok": False, "error": code, "detail": answer["detail"]}, name
    last = rig.ask(DOOR, request("OPEN"))
    assert last["ok"] is True
    assert [c.id for c in rig.commands()] == [last["command"]]
    svc = rig.hub.service
    refused = [r for r in svc.call(lambda: svc.hub.audit_log(site=None, since=None, until=None, limit=200))
               if r.act == "homeassistant.request"]
    assert len(refused) >= len(refusals) - 1 and all((r.who, r.outcome) == ("ha", "refused") for r in refused)


def test_a_retained_request_reaches_the_hub_marked_retained_when_it_reconnects(tmp_path: Path,
                                                                               broker: Mosquitto) -> None:
    """The broker hands a retained request to every new subscription: the hub's link
    passes the flag on, and ``parse`` refuses it (above), so a request left at the broker
    opens nothing when the hub (re)connects."""
    with TestClient(broker.host, broker.port) as ha:
        ha.publish(DOOR, request("UNLOCK"), retain=True)
        got: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        link = HubLink(MqttSection(host=broker.host, port=broker.port, client_id="ha-link-test"), None,
                       requests=ha_control.FILTERS, on_request=lambda *a: got.put(a))
        link.start()
        try:
            name, payload, retained = got.get(timeout=10)
        finally:
            link.stop()
            ha.publish(DOOR, b"", retain=True)
    assert (name, retained) == (DOOR, True)
    with pytest.raises(Refused) as exc:
        parse(name, payload, retained=retained, now=time.time(), max_age=30)
    assert exc.value.code == "retained"


def test_no_door_opens_from_home_assistant_during_a_lockdown(rig: Rig) -> None:
    rig.status("minheim", True)
    try:
        answer = rig.ask(DOOR, request("UNLOCK"))
        assert answer["ok"] is False and answer["error"] == "lockdown"
    finally:
        rig.status("minheim", False)
    last = rig.ask(DOOR, request("UNLOCK"))
    assert last["ok"] is True
    assert [c.id for c in rig.commands()] == [last["command"]]


# --- the broker login --------------------------------------------------------------------------------


def test_home_assistants_login_reads_state_and_writes_requests_and_nothing_else(tmp_path: Path) -> None:
    path = provision_hub_config(tmp_path, head="")
    doc = tomllib.loads(path.read_text())
    doc["homeassistant"] = {"enabled": True}
    path.write_text(tomli_w.dumps(doc))
    cfg = hub_config.load(path, check_files=False)
    provision.init(cfg)
    bundle = provision_site.site_add(path, cfg, "minheim", name="Minheim", broker_host="127.0.0.1", tls=False)
    cfg = bundle.config
    login = ha_provision.init(cfg)
    assert login.changed and login.cert_file is not None
    assert ha_provision.init(cfg).changed == ()  # a second run changes nothing
    files = provision.broker_files(cfg)
    ha_password = login.password_file.read_text().strip()
    site_password = (bundle.dir / "mqtt.password").read_text().strip()
    hub_password = Path(cfg.mqtt.password_file or "").read_text().strip()
    with Mosquitto(tmp_path / "broker", password_file=files.passwd, hub_password_file=files.hub_passwd,
                   acl_file=files.acl) as broker, \
            TestClient(broker.host, broker.hub_port, username="hub", password=hub_password, client_id="hub") as hub, \
            TestClient(broker.host, broker.port, username="homeassistant", password=ha_password) as ha, \
            TestClient(broker.host, broker.port, username="minheim", password=site_password) as site:
        hub.subscribe("#")
        ha.subscribe(f"{ROOT}/#")
        ha.subscribe("homeassistant/#")
        # Home Assistant may write requests only.
        assert not ha.publish(DOOR, b"request").is_failure  # type: ignore[union-attr]
        for name in (topic("minheim", Kind.COMMAND), topic("minheim", Kind.EVENT), topic("minheim", Kind.STATUS),
                     topic("minheim", Kind.CACHE), "homeassistant/lock/x/config", ha_control.result_topic("minheim")):
            rc = ha.publish(name, b"forged")
            assert rc is not None and rc.is_failure, name
        # A site may not write requests (it would act as Home Assistant).
        assert site.publish(DOOR, b"from the site").is_failure  # type: ignore[union-attr]
        hub.publish(ha_control.result_topic("marker"), b"marker")  # the hub's own, delivered after all of the above
        assert until(hub, b"marker") == [b"request"]
        # Home Assistant reads the site's state, not its events or commands.
        for kind in (Kind.EVENT, Kind.COMMAND, Kind.STATUS, Kind.OCCUPANCY):
            hub.publish(topic("minheim", kind), f"{kind.value}".encode())
        hub.publish(topic("minheim", Kind.DOOR, "eingang"), b"door")
        hub.publish("homeassistant/sensor/x/config", b"discovery")
        assert sorted(until(ha, b"discovery")) == [b"door", b"occupancy", b"status"]


def until(client: TestClient, marker: bytes) -> list[bytes]:
    """The payloads ``client`` got before ``marker``."""
    out = []
    while (msg := client.expect(timeout=10)).payload != marker:
        out.append(msg.payload)
    return out
