"""The dashboard against a live site (the real agent in a subprocess, real Mosquitto): a
badge at the room door shows up in the caretaker's live stream within a second, and the
actions of caretakers and admins reach the site and come back as state."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.dashboard import SseEvent, SseReader, add_user, login
from testkit.util import wait_for

CARD = "em4100:0A00B1C2D3"


def present(ev: SseEvent) -> int | None:
    if ev.event != "site":
        return None
    value: int = ev.json()["rooms"][0]["present"]
    return value


def test_a_badge_and_the_dashboards_actions_at_a_live_site(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform
) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",))
    passwords = {"boss": add_user(county, "boss", "admin"), "anna": add_user(county, "anna", "caretaker", "minheim")}
    with open_store(county.store_url) as store:
        store.add_member("m-1", "Anna Beispiel")
        store.add_credential("m-1", CARD)
        store.add_grant("m-1", "minheim", label="Hausmeisterei")
    site = county.sites["minheim"]
    url = county.http_url
    with HubThread(county) as hub:
        site.start()
        sse: SseReader | None = None
        try:
            boss, anna = login(url, "boss", passwords["boss"]), login(url, "anna", passwords["anna"])

            def snapshot() -> dict[str, Any]:
                doc: dict[str, Any] = boss.get(url + "/api/v1/sites/minheim", timeout=10).json()
                return doc

            wait_for(lambda: snapshot()["online"] and snapshot()["cache"]["current"], 30,
                     what="the site online with the latest cache")
            sse = SseReader(anna, url + "/api/v1/live?site=minheim")
            assert present(sse.wait(lambda e: e.event == "site", 10)) == 0

            t0 = time.monotonic()
            site.badge("coworking-sim", CARD)
            ev = sse.wait(lambda e: present(e) == 1, 5)
            print(f"badge at the room door → caretaker's live stream: {(ev.at - t0) * 1000:.0f} ms")
            assert ev.at - t0 < 1.0
            assert "who" not in ev.json()["rooms"][0]  # a caretaker sees the count only
            assert boss.get(url + "/api/v1/sites/minheim/rooms", timeout=10).json()[0]["who"] == ["Anna Beispiel"]

            def post(s: requests.Session, path: str, doc: dict[str, Any] | None = None) -> requests.Response:
                return s.post(url + "/api/v1/sites/minheim/" + path, json=doc or {}, timeout=10)

            # A caretaker checks everybody out and unlocks the entrance.
            assert post(anna, "commands", {"action": "checkout_all"}).status_code == 202
            sse.wait(lambda e: present(e) == 0, 10)
            assert post(anna, "commands", {"action": "unlock", "door": "eingang", "seconds": 2}).status_code == 202

            def granted_by_command() -> bool:
                evs = anna.get(url + "/api/v1/events?site=minheim&type=access.granted", timeout=10).json()
                return any(e.get("reason") == "command" for e in evs)

            wait_for(granted_by_command, 10, what="the remote unlock reported by the site")

            # An admin locks the site down and ends it; the state comes back live.
            def live_state(key: str, value: object) -> Callable[[SseEvent], bool]:
                return lambda e: e.event == "site" and e.json()[key] == value

            assert post(boss, "commands", {"action": "lockdown"}).status_code == 202
            sse.wait(live_state("lockdown", True), 10)
            assert post(boss, "commands", {"action": "lockdown_end"}).status_code == 202
            sse.wait(live_state("lockdown", False), 10)
            # ... and pushes the full cache, which the site applies.
            r = post(boss, "push")
            assert r.status_code == 202
            version = r.json()["published_version"]
            wait_for(lambda: snapshot()["cache"]["applied"] == version, 20, what="the pushed cache applied")
        finally:
            if sse is not None:
                sse.close()
            site.stop()
        wait_for(lambda: hub.service.live.streams == 0, 10, what="the live stream closed at the hub")
