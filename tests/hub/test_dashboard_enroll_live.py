"""Card enrollment at a site from the dashboard's API, against a live site (the real agent
in a subprocess, real Mosquitto, the running hub on a thread): an admin starts it, the
card presented at the site's reader is enrolled and the site then holds a cache in which
it opens the door; caretakers and requests without the CSRF token are refused; an unknown
reader is refused with the site's code; no card in time expires cleanly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.dashboard import add_user, login
from testkit.util import wait_for

CARD = "em4100:0A00B1C2D3"
READER = "eingang-sim"


def test_an_admin_enrolls_a_card_at_a_live_site_from_the_dashboard(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform
) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",))
    passwords = {"boss": add_user(county, "boss", "admin"), "anna": add_user(county, "anna", "caretaker", "minheim")}
    with open_store(county.store_url) as store:
        store.add_member("ct-1", "Hausmeister")  # no card yet, a standing grant for the entrance
        store.add_grant("ct-1", "minheim", doors=["eingang"], label="Hausmeisterei")
    site = county.sites["minheim"]
    url = county.http_url
    with HubThread(county):
        site.start()
        try:
            boss, anna = login(url, "boss", passwords["boss"]), login(url, "anna", passwords["anna"])
            enroll_url = url + "/api/v1/sites/minheim/enroll"

            def snapshot() -> dict[str, Any]:
                doc: dict[str, Any] = boss.get(url + "/api/v1/sites/minheim", timeout=10).json()
                return doc

            wait_for(lambda: snapshot()["online"] and snapshot()["cache"]["current"], 20,
                     what="the site online with the latest cache")

            def start(reader: str, seconds: int) -> str:
                r = boss.post(enroll_url, json={"member": "ct-1", "reader": reader, "seconds": seconds}, timeout=10)
                assert r.status_code == 202, r.text
                command_id: str = r.json()["id"]
                return command_id

            def follow(command_id: str, timeout: float) -> tuple[dict[str, Any], list[str]]:
                """Poll the enrollment as the page does, until it is final; the states seen."""
                seen: list[str] = []

                def step() -> dict[str, Any] | None:
                    r = boss.get(url + f"/api/v1/enrollments/{command_id}", timeout=10)
                    assert r.status_code == 200, r.text
                    doc: dict[str, Any] = r.json()
                    if not seen or seen[-1] != doc["state"]:
                        seen.append(doc["state"])
                    return doc if doc["final"] else None

                return wait_for(step, timeout, interval=0.1, what=f"enrollment {command_id} to finish"), seen

            # Caretakers may not; a session without the CSRF header may not either.
            body = {"member": "ct-1", "reader": READER, "seconds": 5}
            assert anna.post(enroll_url, json=body, timeout=10).status_code == 403
            r = requests.post(enroll_url, json=body, cookies=boss.cookies, timeout=10)
            assert r.status_code == 403 and "CSRF" in r.json()["error"]
            assert boss.post(enroll_url, json={**body, "seconds": 121}, timeout=10).status_code == 400
            assert boss.post(enroll_url, json={**body, "member": "nobody"}, timeout=10).status_code == 400

            # A reader the site does not have: refused with the site's code.
            doc, _ = follow(start("keller", 5), 10)
            assert (doc["state"], doc["code"]) == ("refused", "malformed"), doc
            assert anna.get(url + f"/api/v1/enrollments/{doc['id']}", timeout=10).status_code == 403

            # No card in time: expired once the site's window (and a grace) has passed.
            t0 = time.monotonic()
            doc, seen = follow(start(READER, 1), 15)
            assert doc["state"] == "expired" and seen[-2:] == ["acknowledged", "expired"], (doc, seen)
            print(f"no card: expired after {time.monotonic() - t0:.1f} s")

            # The card: acknowledged, presented once (opens nothing), enrolled, pushed, held.
            command_id = start(READER, 30)
            wait_for(lambda: boss.get(url + f"/api/v1/enrollments/{command_id}", timeout=10)
                     .json()["state"] == "acknowledged", 10, interval=0.05, what="the site to wait for the card")
            site.badge(READER, CARD)
            doc, seen = follow(command_id, 20)
            assert doc["state"] == "held" and doc["member"] == "ct-1", (doc, seen)
            assert "enrolled" not in seen or seen.index("enrolled") < seen.index("held")
            assert snapshot()["cache"]["applied"] >= doc["cache_version"]

            def access() -> list[dict[str, Any]]:
                rows: list[dict[str, Any]] = boss.get(url + "/api/v1/events?site=minheim&limit=1000",
                                                      timeout=10).json()
                return [e for e in rows if e["type"].startswith("access.")]

            assert access() == []  # the enrollment read opened nothing
            site.badge(READER, CARD)
            ev = wait_for(access, 10, interval=0.05, what="the enrolled card at the door")[0]
            assert (ev["type"], ev["door"], ev["reason"]) == ("access.granted", "eingang", "standing"), ev
        finally:
            site.stop()
