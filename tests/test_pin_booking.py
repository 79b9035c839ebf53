"""A booking's PIN, from the booking platform to a Wiegand keypad at the door: the real hub
syncs it into a ``pin:`` cache entry for the booking's window (grace added) and doors; the
real agent (on a thread, mock pins, a settable clock) opens the door for it during the
window and not before or after."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from edge.clock import FakeClock
from hub.store import open_store
from readers.wiegand import WiegandReader
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.util import wait_for
from tests.edge.hubside import agent_in_thread, read_cache
from tests.edge.test_keypad import type_keys
from wire import messages as m
from wire.creds import cred_hash

LOCK_EINGANG = 17


def test_a_booking_pin_opens_the_door_on_a_keypad_during_its_window_only(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, mock_pins: Any
) -> None:
    layout = {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8}],
        "doors": [{"id": "eingang", "lock_pin": LOCK_EINGANG, "unlock_seconds": 1},
                  {"id": "coworking", "room": "coworking", "lock_pin": 5, "unlock_seconds": 1}],
        "readers": [{"id": "eingang-keypad", "type": "wiegand", "door": "eingang", "d0_pin": 20, "d1_pin": 21}],
    }
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), layouts={"minheim": layout})
    site = county.sites["minheim"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = now + dt.timedelta(hours=1), now + dt.timedelta(hours=3)
    # A guest booking: the platform's member has no card at the hub, only the booking's PIN.
    booking_platform.add("bk-pin", county.resource("minheim"), "guest-7", start, end, pin="4821")
    with HubThread(county) as hub:
        store = open_store(hub.service.cfg.hub.store_url)
        try:
            report = hub.service.call(hub.service.sync_now)
            assert report.ok and "minheim" in report.sites
            _, texts = store.cache_snapshot("minheim")  # type: ignore[misc]
            entries = [m.decode(t.encode(), m.Entry) for t in texts.values()]
            assert len(entries) == 1
            e = entries[0]
            grace = 15 * 60
            assert e.cred == cred_hash(site.cred_key, "pin:4821") and e.ref == "bk-pin" and e.room == "coworking"
            assert (e.from_, e.until) == (int(start.timestamp()) - grace, int(end.timestamp()) + grace)
            assert sorted(e.doors) == ["coworking", "eingang"]
            latest = store.cache_state("minheim").version  # type: ignore[union-attr]

            def access() -> list[dict[str, Any]]:
                return [json.loads(x.payload) for x in reversed(store.events(site_id="minheim", limit=1000))
                        if x.type.startswith("access.")]

            # Made after the cache was signed: a clock behind its issued_at would be untrusted.
            clock = FakeClock(time.time() + 1)
            with agent_in_thread(site, clock=clock) as agent:
                wait_for(lambda: (site.data_dir / "cache.db").exists() and read_cache(site)[0] == latest, 20,
                         what="the PIN's cache at the site")
                keypad = wait_for(lambda: agent.readers.get("eingang-keypad"), 10, what="the keypad to start")
                assert isinstance(keypad, WiegandReader)

                def pin_at_door(n: int) -> dict[str, Any]:
                    type_keys(mock_pins, keypad, "4821#")
                    return wait_for(lambda: len(ev := access()) >= n and ev[n - 1], 15,  # type: ignore[return-value]
                                    what=f"access event {n} at the hub")

                ev = pin_at_door(1)  # an hour early: more than the grace before the start
                assert (ev["type"], ev["reason"]) == ("access.denied", "outside_window")
                assert mock_pins.pin(LOCK_EINGANG).state == 0

                clock.advance(3600 - grace + 60)  # within the grace before the start
                ev = pin_at_door(2)
                assert (ev["type"], ev["reason"], ev["ref"], ev["door"]) == ("access.granted", "booking", "bk-pin",
                                                                              "eingang")
                clock.advance(2 * 3600 + 2 * grace)  # after the end and its grace
                ev = pin_at_door(3)
                assert (ev["type"], ev["reason"]) == ("access.denied", "outside_window")
                assert "pin:4821" not in json.dumps(access()) and "4821#" not in json.dumps(access())
        finally:
            store.close()
