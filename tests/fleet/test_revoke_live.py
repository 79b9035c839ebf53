"""Revocation on a real Mosquitto (issue #13), by certificate and by password: within
seconds of ``torwart-hub site revoke`` the site is thrown off the broker and cannot come
back (the broker refuses its certificate by the CRL, its password is gone), the running hub
publishes nothing more for it; the other site notices nothing. ``site reinstate`` lets a
new Pi join with a new code; ``site remove`` clears the retained cache and keeps the events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.county import HubThread
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from tests.fleet._fleet import add_site, fleet_hub, join_site, online
from wire.topics import Kind, topic

CARD = "em4100:0A1B2C3D4E"


@pytest.mark.parametrize("tls", [True, False], ids=["certificate", "password"])
def test_a_revoked_site_is_thrown_off_cannot_come_back_and_gets_nothing_while_the_other_carries_on(
    tmp_path: Path, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str], tls: bool
) -> None:
    fh = fleet_hub(tmp_path, booking_platform, ("minheim", "altdorf"), joining=("minheim", "altdorf"), tls=tls)
    minheim, altdorf = fh.county.sites["minheim"], fh.county.sites["altdorf"]
    refusal = "certificate verify failed" if tls else "not authorised"
    codes = {s: add_site(fh, capsys, s, tls=tls) for s in ("minheim", "altdorf")}
    with HubThread(fh.county, fh.cfg) as running:
        for s in ("minheim", "altdorf"):
            join_site(fh, capsys, s, codes[s], fh.county.http_url)
        watch = TestClient(fh.broker.host, fh.broker.hub_port, username="hub", password=fh.passwords["hub"])
        minheim.start()
        altdorf.start()
        try:
            wait_for(lambda: online(fh, "minheim") and online(fh, "altdorf"), 30, what="both sites online")
            wait_for(lambda: minheim.cache_version() is not None and altdorf.cache_version() is not None, 30,
                     what="both sites hold a cache")
            for s in ("minheim", "altdorf"):
                watch.subscribe(topic(s, Kind.STATUS))
                watch.subscribe(topic(s, Kind.CACHE_DELTA))
                watch.subscribe(topic(s, Kind.CACHE))
            watch.drain()
            refused_before = fh.broker.log_path.read_text(errors="replace").count(refusal)

            code, out, err = fh.hub(capsys, "site", "revoke", "minheim")
            assert code == 0, err
            assert "certificate(s) revoked" in out and "broker reloaded" in out and "session was closed" in out
            # Thrown off within seconds, and refused when it tries again.
            wait_for(lambda: "disconnected from the broker" in minheim.log_tail(400), 10, what="minheim thrown off")
            wait_for(lambda: not online(fh, "minheim"), 10, what="minheim offline at the hub")
            wait_for(lambda: fh.broker.log_path.read_text(errors="replace").count(refusal) >= refused_before + 2,
                     30, what="minheim refused twice on reconnecting")
            assert not online(fh, "minheim")
            wait_for(lambda: "minheim" in running.service.link.blocked, 5, what="the running hub to block minheim")

            # The hub publishes nothing for it; the other site gets its new cache.
            assert fh.hub(capsys, "cards", "add", "anna", CARD)[0] == 0
            for s in ("minheim", "altdorf"):
                assert fh.hub(capsys, "grants", "add", "anna", s)[0] == 0
            before = altdorf.cache_version()
            wait_for(lambda: (altdorf.cache_version() or 0) > (before or 0), 20, what="altdorf's new cache")
            seen = watch.drain()
            assert not [m for m in seen if m.topic.startswith(topic("minheim", Kind.CACHE))], seen
            assert [m for m in seen if m.topic.startswith(topic("altdorf", Kind.CACHE))]
            # ... and altdorf noticed nothing: no offline status, no disconnect in its log.
            assert not [m for m in seen if m.topic == topic("altdorf", Kind.STATUS)
                        and json.loads(m.payload).get("state") == "offline"]
            assert "disconnected from the broker" not in altdorf.log_tail(400) and online(fh, "altdorf")
        finally:
            watch.close()
            minheim.stop()
            altdorf.stop()
        with open_store(fh.cfg.hub.store_url) as store:
            certs = store.site_certs("minheim")
            assert certs and all(c.revoked_at is not None for c in certs)
            assert all(c.revoked_at is None for c in store.site_certs("altdorf"))
