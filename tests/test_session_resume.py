"""A site's session is never started clean (edge/link.py), so a restarted agent gets no
retained full cache again. What then of a cache message the agent's paho acknowledged to
the broker but the process never applied (killed in between)? It is gone from the session,
and the site holds the version before it: the real hub must bring it to the latest from the
version its status reports (hub/publisher.py ``converge``). Real parts: Mosquitto, the hub
service, the agent."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.util import next_matching, wait_for
from wire import messages as m
from wire.topics import Kind, topic

from .edge.hubside import agent_in_thread

CARD = "em4100:0A00B1C2D3"


def test_a_cache_acknowledged_by_a_killed_agent_but_never_applied_reaches_the_site_after_its_restart(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, mock_pins: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.link")
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), store="sqlite",
                         site_policy={"status_interval_seconds": 1})
    site = county.sites["minheim"]
    with HubThread(county) as hub:
        # The hub waits resend_seconds (30 s by default) before it sends again what a site
        # has not acknowledged; shortened here so that the test takes seconds.
        hub.service.call(lambda: setattr(hub.service.hub.publisher, "resend_seconds", 3.0))
        store = open_store(hub.service.cfg.hub.store_url)
        store.add_member("m-1", "Anna Beispiel", None)
        store.add_credential("m-1", CARD)
        store.add_member("m-2", "Bert Beispiel", None)
        store.add_credential("m-2", "em4100:0B00B1C2D3")
        now = dt.datetime.now(dt.UTC)
        booking_platform.add("bk-1", county.resource("minheim"), "m-1", now, now + dt.timedelta(hours=2))
        assert hub.service.call(hub.service.sync_now).ok
        with agent_in_thread(site):
            held = store.cache_state("minheim").version  # type: ignore[union-attr]
            wait_for(lambda: site.cache_version() == held, 30, what="the first cache at the site")

        # The agent's last moments, on the wire: its client (same client id, the session
        # resumed) says it is online at version ``held``, receives the next version and
        # acknowledges it to the broker (paho does, once the message is handed over) ...
        doomed = TestClient(broker.host, broker.port, client_id="torwart-site-minheim", clean_start=False,
                            session_expiry=86400)
        try:
            doomed.c.publish(topic("minheim", Kind.STATUS), m.encode(m.Status(
                state="online", ts=now.timestamp(), boot=uuid.uuid4().hex[:12], software="test", cache_version=held,
                clock_synced=True, outbox_pending=0, stream=uuid.uuid4().hex)), qos=1, retain=True)
            wait_for(lambda: (st := store.site_state("minheim")) is not None and st.online, 15,
                     what="the hub seeing the site online")
            booking_platform.add("bk-2", county.resource("minheim"), "m-2", now, now + dt.timedelta(hours=2))
            assert hub.service.call(hub.service.sync_now).ok
            latest = store.cache_state("minheim").version  # type: ignore[union-attr]
            assert latest is not None and held is not None and latest > held
            caches = (topic("minheim", Kind.CACHE), topic("minheim", Kind.CACHE_DELTA))
            next_matching(doomed.messages, lambda msg: msg.topic in caches, 15, "the next cache version")
        finally:
            doomed.close()  # ... and dies before applying it: gone from the session, not applied
        assert site.cache_version() == held

        resumed = sum("session resumed" in r.getMessage() for r in caplog.records)
        with agent_in_thread(site):
            # The restarted agent resumes its session (nothing queued in it) and reports
            # ``held``; the hub sends what that version lacks.
            wait_for(lambda: site.cache_version() == latest, 60, what="the site at the latest version")
        assert sum("session resumed" in r.getMessage() for r in caplog.records) == resumed + 1
        store.close()
