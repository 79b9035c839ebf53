"""The admin CLI against a live site (the real agent in a subprocess, real Mosquitto):
push waits for the site's acknowledgement, commands are executed and acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cache import CacheStore
from hub.__main__ import main as hub_main
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic


def test_push_unlock_and_lockdown_reach_a_live_site(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",))
    cfg = str(county.hub_config_path)
    site = county.sites["minheim"]
    watch = TestClient(broker.host, broker.port)
    watch.subscribe(topic("minheim", Kind.STATUS))
    watch.subscribe(topic("minheim", Kind.EVENT))
    site.start()
    try:
        wait_for(lambda: any(b'"online"' in x.payload for x in watch.drain()), 20, what="site online")
        assert hub_main(["cards", "add", "--config", cfg, "m-1", "em4100:0A00B1C2D3", "--name", "Anna"]) == 0
        assert hub_main(["push", "minheim", "--config", cfg, "--timeout", "20"]) == 0
        out = capsys.readouterr().out
        assert "now holds version" in out
        with CacheStore(site.data_dir / "cache.db", read_only=True) as c:
            assert c.version is not None

        assert hub_main(["unlock", "minheim", "eingang", "--seconds", "2", "--config", cfg]) == 0
        wait_for(lambda: any(b'"reason":"command"' in x.payload for x in watch.drain()), 20,
                 what="the remote unlock reported as a grant")
        assert hub_main(["lockdown", "minheim", "--config", cfg]) == 0

        def lockdown(on: bool) -> bool:
            return any(m.decode(x.payload, m.Status).lockdown is on for x in watch.drain()
                       if x.topic.endswith("/status"))

        wait_for(lambda: lockdown(True), 20, what="lockdown in the site's status")
        assert hub_main(["lockdown", "minheim", "--end", "--config", cfg]) == 0
        wait_for(lambda: lockdown(False), 20, what="lockdown ended in the site's status")
        # A door the site does not have: refused by the site, reported with its code.
        assert hub_main(["unlock", "minheim", "keller", "--config", cfg]) == 1
        assert "unknown_door" in capsys.readouterr().err
    finally:
        site.stop()
        watch.close()
