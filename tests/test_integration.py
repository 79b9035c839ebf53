"""The whole chain, real parts only: the booking platform fake, Mosquitto, the hub
service, and the real edge agent in a subprocess reading an RDM6300 on a pty."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.store import Store, open_store
from testkit.booking_fake import BookingPlatform, iso, push_webhook
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.rdm6300_fake import rdm6300_frame
from testkit.serialpty import PtyPort
from testkit.util import wait_for

CARD = "0A00B1C2D3"


@pytest.fixture
def pty_reader() -> Iterator[PtyPort]:
    with PtyPort() as p:
        yield p


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, pty_reader: PtyPort,
           hub_store: str) -> County:
    layout = {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8}],
        "doors": [{"id": "eingang", "lock_pin": 17, "unlock_seconds": 1},
                  {"id": "coworking", "room": "coworking", "lock_pin": 5, "unlock_seconds": 1}],
        "readers": [{"id": "eingang-rfid", "type": "rdm6300", "door": "eingang", "port": pty_reader.path,
                     "holdoff_seconds": 0.0}],
    }
    return make_county(tmp_path, broker, booking_platform, ("minheim",), layouts={"minheim": layout}, store=hub_store)


def access_events(store: Store) -> list[dict[str, Any]]:
    import json

    return [json.loads(e.payload) for e in reversed(store.events(site_id="minheim", limit=1000))
            if e.type.startswith("access.")]


def badge_and_wait(pty: PtyPort, store: Store, timeout: float = 15.0) -> dict[str, Any]:
    before = len(access_events(store))
    pty.write(rdm6300_frame(CARD))
    return wait_for(lambda: (ev := access_events(store))[before:] and ev[before], timeout,  # type: ignore[index]
                    what="the badge's access event at the hub")


def test_a_booking_on_the_platform_opens_the_door_and_its_cancellation_shuts_it(
    county: County, booking_platform: BookingPlatform, pty_reader: PtyPort
) -> None:
    site = county.sites["minheim"]
    with HubThread(county) as hub:
        store = open_store(hub.service.cfg.hub.store_url)
        store.add_member("m-17", "Anna Beispiel", "anna@example.org")
        store.add_credential("m-17", f"em4100:{CARD}")
        site.start()
        try:
            wait_for(lambda: county.sites["minheim"].cache_version() is not None, 20, what="first cache at the site")
            # No booking yet: refused.
            assert badge_and_wait(pty_reader, store)["reason"] == "unknown_credential"

            now = dt.datetime.now(dt.UTC)
            booking_platform.add("bk-1", county.resource("minheim"), "m-17", now - dt.timedelta(minutes=5),
                                 now + dt.timedelta(hours=2))
            report = hub.service.call(hub.service.sync_now)
            assert report.ok and "minheim" in report.sites
            latest = store.cache_state("minheim").version  # type: ignore[union-attr]
            wait_for(lambda: county.sites["minheim"].cache_version() == latest, 20,
                     what="the booking's cache at the site")
            ev = badge_and_wait(pty_reader, store)
            assert (ev["type"], ev["reason"], ev["ref"]) == ("access.granted", "booking", "bk-1")

            booking_platform.cancel("bk-1")
            report = hub.service.call(hub.service.sync_now)
            assert report.ok
            latest = store.cache_state("minheim").version  # type: ignore[union-attr]
            wait_for(lambda: county.sites["minheim"].cache_version() == latest, 20, what="the cancellation at the site")
            ev = badge_and_wait(pty_reader, store)
            assert (ev["type"], ev["reason"]) == ("access.denied", "unknown_credential")

            # A webhook booking: no sync runs; it reaches the door within seconds.
            booking = {"id": "bk-2", "resource_id": county.resource("minheim"), "member_id": "m-17",
                       "start": iso(now - dt.timedelta(minutes=1)), "end": iso(now + dt.timedelta(hours=1)),
                       "status": "confirmed", "updated_at": iso(dt.datetime.now(dt.UTC)), "pin": None}
            t0 = time.monotonic()
            assert push_webhook(county.http_url, booking, county.webhook_secret) == 200
            latest = store.cache_state("minheim").version  # type: ignore[union-attr]
            wait_for(lambda: county.sites["minheim"].cache_version() == latest, 10,
                     what="the webhook booking at the site")
            ev = badge_and_wait(pty_reader, store)
            elapsed = time.monotonic() - t0
            assert (ev["type"], ev["reason"], ev["ref"]) == ("access.granted", "booking", "bk-2")
            print(f"webhook → door open: {elapsed:.2f} s")
            assert elapsed < 10

            # A webhook with a bad signature changes nothing.
            assert push_webhook(county.http_url, {**booking, "id": "bk-3"}, b"not-the-secret") == 401
            assert store.get_booking("bk-3") is None
        finally:
            site.stop()
            store.close()
