"""The hub's HTTP port taken when the hub starts (issue #10, item 18): the hub says so in
one line per attempt, keeps trying with backoff while the rest of it runs (MQTT ingest),
and serves as soon as the port is free; never a traceback, never an exit."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, make_county
from testkit.mqttclient import TestClient
from testkit.util import stop_process, wait_for
from wire import messages as m
from wire.topics import Kind, topic


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim",))


def _healthz(county: County) -> bool:
    try:
        with urllib.request.urlopen(f"{county.http_url}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_a_hub_whose_http_port_is_taken_says_so_keeps_ingesting_and_serves_once_it_is_free(
    county: County, broker: Mosquitto, mqtt_client: type[TestClient], tmp_path: Path
) -> None:
    squatter = socket.create_server(("127.0.0.1", county.http_port))  # listening: the port is in use
    log_path = tmp_path / "hub.log"
    with log_path.open("wb") as out:
        hub = subprocess.Popen([sys.executable, "-m", "hub", "run", "--config", str(county.hub_config_path),
                                "--log-level", "info"], stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        line = f"HTTP port 127.0.0.1:{county.http_port} is in use; retrying in"

        def log_text() -> str:
            return log_path.read_text(errors="replace")

        wait_for(lambda: log_text().count(line) >= 2 or hub.poll() is not None, 30,
                 what="two 'in use' lines from the hub")
        assert hub.poll() is None, f"the hub exited with {hub.returncode}:\n{log_text()}"
        assert "retrying in 0.5 s" in log_text() and "retrying in 1.0 s" in log_text()  # backoff
        # Meanwhile the hub ingests: an event is stored and acknowledged.
        site = mqtt_client(broker)  # type: ignore[call-arg]
        site.subscribe(topic("minheim", Kind.EVENT_ACK))
        ev = m.DoorOpened(id=uuid.uuid4().hex, site="minheim", seq=1, boot="b", ts=1_800_000_001.0,
                          clock_synced=True, door="eingang")
        site.publish(topic("minheim", Kind.EVENT), m.encode(ev))
        wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto == 1 for x in site.drain()), 30,
                 what="the event acknowledged while the HTTP port is taken")
        assert not _healthz(county)  # the squatter holds the port (it never answers)
        squatter.close()
        wait_for(lambda: _healthz(county), 30, interval=0.2, what="/healthz once the port is free")
        assert hub.poll() is None
    finally:
        squatter.close()
        code = stop_process(hub, 20)
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert code == 0, text
    assert f"HTTP port 127.0.0.1:{county.http_port} bound after" in text
