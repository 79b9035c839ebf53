"""What the running hub tells the booking platform (real Mosquitto, real hub service and
store, the booking fake over HTTP): check-ins only for the reporting site's own bookings,
a durable delivery queue with retries, and no-show releases only while the hub could see
the site throughout, once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.__main__ import main as hub_main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.site import default_layout
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic

FAST = {"no_show_minutes": 10, "retry_first_seconds": 0.2, "retry_max_seconds": 1.0}


def two_rooms() -> dict[str, Any]:
    layout = default_layout()
    layout["rooms"].append({"id": "saal", "name": "Saal", "capacity": 40})
    layout["doors"].append({"id": "saal", "room": "saal", "lock_pin": 13, "unlock_seconds": 2})
    return layout


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim", "wittlich"),
                       layouts={"minheim": two_rooms()}, booking=FAST)


@pytest.fixture
def hub(county: County) -> Iterator[HubThread]:
    with HubThread(county) as h:
        yield h


def checkin(site: str, seq: int, ref: str, room: str = "coworking", ts: float | None = None) -> bytes:
    return m.encode(m.OccupancyCheckin(id=uuid.uuid4().hex, site=site, seq=seq, boot="b",
                                       ts=time.time() if ts is None else ts, clock_synced=True, room=room,
                                       who="m-abc", ref=ref, reason="badge"))


def status(boot: str = "b1", outbox: int = 0, state: str = "online") -> bytes:
    return m.encode(m.Status(state=state, ts=time.time(), boot=boot, outbox_pending=outbox))  # type: ignore[arg-type]


def book(platform: BookingPlatform, id: str, resource: str, start: dt.datetime | None = None) -> dt.datetime:
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    platform.add(id, resource, "m-1", start, start + dt.timedelta(hours=1))
    return start


def synced(hub: HubThread) -> None:
    svc = hub.service
    assert svc.call(svc.sync_now).ok


def acked(site: TestClient, upto: int) -> None:
    wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto >= upto for x in site.drain()), 20,
             what=f"the hub's ack up to {upto}")


def feedback_row(hub: HubThread, booking: str, kind: str = "check_in") -> Any:
    svc = hub.service
    return svc.call(lambda: svc.store.get_feedback(booking, kind))


# --- item 10: check-ins only for the site's own bookings ------------------------------------------


def test_a_site_cannot_check_in_another_sites_booking_but_its_own_reaches_the_platform(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient],
) -> None:
    book(booking_platform, "bk-wittlich", county.resource("wittlich"))
    book(booking_platform, "bk-saal", county.resource("minheim", "saal"))
    book(booking_platform, "bk-own", county.resource("minheim"))
    book(booking_platform, "bk-gone", county.resource("minheim"))
    booking_platform.cancel("bk-gone")
    synced(hub)
    booking_platform.add("bk-unknown", county.resource("minheim"), "m-1", dt.datetime.now(dt.UTC),
                         dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))  # the hub has not synced it
    site = mqtt_client(broker)  # type: ignore[call-arg]  # minheim's login: its own topics only
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    for seq, (ref, room) in enumerate([("bk-wittlich", "coworking"), ("bk-saal", "coworking"),
                                       ("bk-gone", "coworking"), ("bk-unknown", "coworking")], start=1):
        site.publish(topic("minheim", Kind.EVENT), checkin("minheim", seq, ref, room))
    acked(site, 4)
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 5, "bk-own"))
    wait_for(lambda: booking_platform.checkins, 20, what="the own booking's check-in at the platform")

    assert [ref for ref, _ in booking_platform.checkins] == ["bk-own"]
    assert booking_platform.write_calls("check-in")[0].path.endswith("/bk-own/check-in")  # nothing else tried
    refused = hub.service.feedback.stats.checkins_refused
    assert refused == {"other_site": 1, "other_room": 1, "not_confirmed": 1, "unknown_booking": 1}
    assert feedback_row(hub, "bk-wittlich") is None and feedback_row(hub, "bk-own").state == "delivered"


def test_a_refused_check_in_is_logged_with_its_reason(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient], caplog: pytest.LogCaptureFixture,
) -> None:
    book(booking_platform, "bk-wittlich", county.resource("wittlich"))
    synced(hub)
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-wittlich"))
    acked(site, 1)
    wait_for(lambda: any("bk-wittlich" in r.getMessage() and "other_site" in r.getMessage() for r in caplog.records),
             10, what="the refusal logged")
    assert hub.service.feedback.stats.checkins_refused == {"other_site": 1}
    assert booking_platform.write_calls("check-in") == []


# --- item 16: a durable queue with retries --------------------------------------------------------


def test_a_check_in_the_platform_refuses_three_times_arrives_exactly_once(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient],
) -> None:
    book(booking_platform, "bk-1", county.resource("minheim"))
    book(booking_platform, "bk-2", county.resource("minheim"))
    synced(hub)
    booking_platform.fail("status", 3, status=503, on="check-in")
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-1"))
    wait_for(lambda: booking_platform.checkins, 20, what="the check-in once the platform heals")
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 2, "bk-1"))  # a second badge
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 3, "bk-2"))  # then another booking's
    wait_for(lambda: len(booking_platform.checkins) >= 2, 20, what="the other booking's check-in")
    assert [ref for ref, _ in booking_platform.checkins] == ["bk-1", "bk-2"]
    assert len(booking_platform.write_calls("check-in")) == 5  # three 503s, two successes
    assert feedback_row(hub, "bk-1").attempts == 4 and feedback_row(hub, "bk-1").state == "delivered"
    assert hub.service.feedback.stats.checkins_again == 1


def test_a_pending_check_in_survives_a_killed_hub_and_is_delivered_once(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, mqtt_client: type[TestClient],
) -> None:
    # Short timeouts: a check-in claimed when the hub is killed is due again after one lease.
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), booking={**FAST, "timeout_seconds": 1})
    book(booking_platform, "bk-1", county.resource("minheim"))
    booking_platform.fail("status", None, status=503, on="check-in")  # until healed
    log = (tmp_path / "hub.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "hub", "run", "--config", str(county.hub_config_path)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    try:
        with open_store(county.store_url) as store:
            wait_for(lambda: store.get_booking("bk-1"), 30, what="the hub's first sync")
        site = mqtt_client(broker)  # type: ignore[call-arg]
        site.subscribe(topic("minheim", Kind.EVENT_ACK))
        site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-1"))
        acked(site, 1)
        wait_for(lambda: len(booking_platform.write_calls("check-in")) >= 2, 20, what="a retry")
    finally:
        proc.kill()  # no goodbye
        proc.wait()
    assert booking_platform.checkins == []
    booking_platform.heal()
    with HubThread(county) as hub:
        wait_for(lambda: booking_platform.checkins, 30, what="the check-in after the restart")
        wait_for(lambda: feedback_row(hub, "bk-1").state == "delivered", 10, what="delivered recorded")
        assert hub.service.call(hub.service.store.feedback_backlog) == []
    assert [ref for ref, _ in booking_platform.checkins] == ["bk-1"]


@pytest.mark.parametrize("refusal", [404, 400])
def test_a_check_in_the_platform_refuses_for_good_is_failed_and_shown_in_sites(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient], capsys: pytest.CaptureFixture[str], refusal: int,
) -> None:
    book(booking_platform, "bk-1", county.resource("minheim"))
    book(booking_platform, "bk-2", county.resource("minheim"))
    synced(hub)
    if refusal == 404:
        del booking_platform.bookings["bk-1"]  # the platform lost it after the sync
    else:
        booking_platform.fail("status", 1, status=400, on="check-in")
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-1"))
    acked(site, 1)
    wait_for(lambda: booking_platform.write_calls("check-in"), 20, what="the check-in tried")

    def failed_in_sites() -> str:
        assert hub_main(["sites", "--config", str(county.hub_config_path)]) == 0
        out = capsys.readouterr().out
        return out if "FAILED for good" in out else ""

    out = wait_for(failed_in_sites, 20, what="the failure in `sites`")
    header, minheim = out.splitlines()[0], next(ln for ln in out.splitlines() if ln.startswith("minheim"))
    assert "TO PLATFORM" in header and minheim.rstrip().endswith("1 failed")
    assert "check-in of booking bk-1 (minheim): FAILED for good" in out and f"HTTP {refusal}" in out
    row = feedback_row(hub, "bk-1")
    assert row.state == "failed" and row.attempts == 1 and f"HTTP {refusal}" in (row.last_error or "")
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 2, "bk-2"))
    wait_for(lambda: booking_platform.checkins, 20, what="a later check-in delivered")
    assert [c.path for c in booking_platform.write_calls("check-in")] == [
        "/api/v1/bookings/bk-1/check-in", "/api/v1/bookings/bk-2/check-in"]  # bk-1 not tried again


def test_a_pending_check_in_shows_in_sites_with_its_error(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient], capsys: pytest.CaptureFixture[str],
) -> None:
    book(booking_platform, "bk-1", county.resource("minheim"))
    synced(hub)
    booking_platform.fail("status", None, status=502, on="check-in")
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-1"))
    wait_for(lambda: booking_platform.write_calls("check-in"), 20, what="a first try")

    def tried_in_sites() -> str:
        assert hub_main(["sites", "--config", str(county.hub_config_path)]) == 0
        out = capsys.readouterr().out
        return out if "HTTP 502" in out else ""

    out = wait_for(tried_in_sites, 20, what="the pending check-in in `sites`")
    assert "1 pending" in next(ln for ln in out.splitlines() if ln.startswith("minheim"))
    assert "check-in of booking bk-1 (minheim): pending (tried" in out and "HTTP 502" in out


def test_a_rate_limited_check_in_waits_as_long_as_retry_after_says(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient],
) -> None:
    book(booking_platform, "bk-1", county.resource("minheim"))
    synced(hub)
    booking_platform.fail("rate_limit", 1, retry_after=2, on="check-in")  # the hub's own backoff is 0.2 s
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-1"))
    wait_for(lambda: booking_platform.checkins, 20, what="the check-in after the rate limit")
    first, second = booking_platform.write_calls("check-in")
    assert second.at - first.at >= 1.9


def test_a_hanging_platform_does_not_hold_up_the_hubs_main_loop(
    hub: HubThread, county: County, booking_platform: BookingPlatform, broker: Mosquitto,
    mqtt_client: type[TestClient],
) -> None:
    book(booking_platform, "bk-1", county.resource("minheim"))
    synced(hub)
    booking_platform.fail("slow", 1, seconds=6, on="check-in")
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "bk-1"))
    wait_for(lambda: booking_platform.write_calls("check-in"), 20, what="the check-in under way")
    t0 = time.monotonic()
    site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 2, "bk-1"))
    acked(site, 2)  # the main loop stored and acked while the platform hangs
    assert hub.service.call(lambda: 42, timeout=2) == 42 and time.monotonic() - t0 < 3
    assert booking_platform.checkins == []
    wait_for(lambda: booking_platform.checkins, 20, what="the slow check-in accepted")
