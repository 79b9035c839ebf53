"""No-show releases by the running hub (real Mosquitto, the real hub service and store, the
booking fake over HTTP; a real site agent where it goes offline): a booking is released
only if the hub saw its site online with an empty outbox and every event acknowledged
from the booking's start on, and once, across restarts and hub processes."""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path

import msgspec
import pytest

from hub import config as hub_config
from hub.store import SiteState
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.util import free_port, wait_for
from tests.hub.test_feedback import FAST, checkin, status
from wire import messages as m
from wire.topics import Kind, topic

NO_SHOW = FAST["no_show_minutes"] * 60


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim",), booking=FAST)


def clean_since(hub: HubThread, site: str = "minheim") -> float | None:
    return hub.service.call(lambda: hub.service.feedback.clean_since(site))


def site_state(hub: HubThread) -> SiteState | None:
    return hub.service.call(lambda: hub.service.store.site_state("minheim"))


def seen_clean(hub: HubThread, after: float, timeout: float = 20) -> float:
    """Wait until the hub has recorded, after ``after``, that minheim is online with an
    empty outbox and every event stored; return the time then."""

    def clean() -> bool:
        st = site_state(hub)
        return (st is not None and st.online and st.outbox_pending == 0 and not st.gaps
                and st.acked_upto == st.max_seq and (st.last_seen or 0) >= after)

    wait_for(clean, timeout, what="the hub seeing the site online and caught up")
    return time.time()


def book_after(platform: BookingPlatform, county: County, id: str, t: float) -> int:
    """A booking of minheim's room starting just after ``t`` (and after now); its start."""
    start = math.floor(max(t, time.time())) + 1
    s = dt.datetime.fromtimestamp(start, dt.UTC)
    platform.add(id, county.resource("minheim"), "m-1", s, s + dt.timedelta(hours=1))
    return start


def started(start: int) -> None:
    wait_for(lambda: time.time() >= start + 0.2, 5, what="the booking's start")


def release(hub: HubThread, at: int) -> list[str]:
    svc = hub.service
    assert svc.call(svc.sync_now).ok
    return svc.call(lambda: svc.release_no_shows(now=at))


def test_a_site_seen_clean_throughout_has_its_no_show_released_once_even_after_a_hub_restart(
    county: County, booking_platform: BookingPlatform, broker: Mosquitto, mqtt_client: type[TestClient],
) -> None:
    site = mqtt_client(broker)  # type: ignore[call-arg]
    with HubThread(county) as hub:
        t0 = time.time()
        site.publish(topic("minheim", Kind.STATUS), status(), retain=True)
        since = seen_clean(hub, t0)
        start = book_after(booking_platform, county, "late", since)
        came = book_after(booking_platform, county, "came", since)
        assert hub.service.call(hub.service.sync_now).ok
        site.subscribe(topic("minheim", Kind.EVENT_ACK))
        site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "came"))
        wait_for(site.drain, 20, what="the check-in acked")
        assert came == start
        assert release(hub, start + NO_SHOW - 1) == []  # not yet
        assert release(hub, start + NO_SHOW) == ["late"]
        wait_for(lambda: booking_platform.releases, 20, what="the release at the platform")
        assert hub.service.call(lambda: hub.service.release_no_shows(now=start + NO_SHOW + 60)) == []
    # The platform's listing fails: the hub's store still holds the booking as confirmed.
    booking_platform.fail("status", None, status=500)
    t1 = time.time()
    with HubThread(county) as hub:
        svc = hub.service
        seen_clean(hub, t1)  # the retained status again
        assert svc.call(lambda: svc.release_no_shows(now=start + NO_SHOW + 120)) == []
        assert svc.call(lambda: svc.store.get_feedback("late", "release")).state == "delivered"
        assert svc.call(lambda: svc.store.get_feedback("came", "check_in")).state == "delivered"
    assert booking_platform.releases == [("late", {"reason": "no_show"})]
    assert len(booking_platform.write_calls("release")) == 1


def test_two_hub_processes_on_one_store_release_a_no_show_once(
    county: County, booking_platform: BookingPlatform, broker: Mosquitto, mqtt_client: type[TestClient],
) -> None:
    base = hub_config.load(county.hub_config_path)

    def worker(n: int) -> hub_config.HubConfig:
        return msgspec.structs.replace(
            base, mqtt=msgspec.structs.replace(base.mqtt, client_id=f"hub-worker-{n}", shared_subscription=True),
            http=msgspec.structs.replace(base.http, listen=f"127.0.0.1:{free_port()}"))

    with HubThread(county, worker(1)) as one, HubThread(county, worker(2)) as two:
        site = mqtt_client(broker)  # type: ignore[call-arg]
        t0 = time.time()
        site.publish(topic("minheim", Kind.STATUS), status(), retain=True)
        since = max(seen_clean(one, t0), seen_clean(two, t0))
        start = book_after(booking_platform, county, "late", since)
        started(start)
        assert release(one, start + NO_SHOW) == ["late"]
        assert two.service.call(lambda: two.service.release_no_shows(now=start + NO_SHOW)) == []  # same store
        wait_for(lambda: booking_platform.releases, 20, what="the release at the platform")
    assert len(booking_platform.write_calls("release")) == 1


def test_a_site_that_went_offline_during_the_booking_has_nothing_released(
    county: County, booking_platform: BookingPlatform, broker: Mosquitto, mqtt_client: type[TestClient],
) -> None:
    agent = county.sites["minheim"]
    watch = mqtt_client(broker)  # type: ignore[call-arg]
    watch.subscribe(topic("minheim", Kind.STATUS))
    with HubThread(county) as hub:
        t0 = time.time()
        agent.start()
        try:
            since = seen_clean(hub, t0, 40)  # the real agent: online, outbox empty, events acked
            start = book_after(booking_platform, county, "late", since)
            started(start)
            agent.kill()  # no goodbye: the broker publishes the site's Last Will
            wait_for(lambda: any(m.decode(x.payload, m.Status).state == "offline" for x in watch.drain()), 20,
                     what="the Last Will")
            wait_for(lambda: (st := site_state(hub)) is not None and not st.online, 10, what="the hub seeing it")
            t1 = time.time()
            agent.start()
            seen_clean(hub, t1, 40)
            assert release(hub, start + NO_SHOW) == []
            assert (clean_since(hub) or 0) > start  # clean again, but only since after the booking's start
            assert hub.service.feedback.stats.releases_held == 1
        finally:
            agent.stop()
    assert booking_platform.write_calls("release") == []


@pytest.mark.parametrize("trouble", ["outbox", "gap", "offline"])
def test_a_site_with_events_in_its_outbox_or_missing_has_nothing_released(
    county: County, booking_platform: BookingPlatform, broker: Mosquitto, mqtt_client: type[TestClient],
    trouble: str,
) -> None:
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    with HubThread(county) as hub:
        t0 = time.time()
        site.publish(topic("minheim", Kind.STATUS), status(), retain=True)
        since = seen_clean(hub, t0)
        start = book_after(booking_platform, county, "late", since)
        started(start)
        if trouble == "outbox":
            site.publish(topic("minheim", Kind.STATUS), status(outbox=2), retain=True)
            seen = wait_for(lambda: (st := site_state(hub)) is not None and st.outbox_pending == 2, 10,
                            what="the outbox recorded")
        elif trouble == "offline":
            site.publish(topic("minheim", Kind.STATUS), status(state="offline"), retain=True)
            seen = wait_for(lambda: (st := site_state(hub)) is not None and not st.online, 10,
                            what="the offline status recorded")
        else:  # seq 2 arrives late
            site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 1, "other"))
            site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 3, "other"))
            seen = wait_for(lambda: (st := site_state(hub)) is not None and st.gaps == ((2, 2),), 10,
                            what="the gap recorded")
            site.publish(topic("minheim", Kind.EVENT), checkin("minheim", 2, "other"))
            wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto == 3 for x in site.drain()), 20,
                     what="the gap filled")
        assert seen
        t1 = time.time()
        site.publish(topic("minheim", Kind.STATUS), status(), retain=True)  # all well again
        seen_clean(hub, t1)
        assert release(hub, start + NO_SHOW) == []
        assert (clean_since(hub) or 0) > start
    assert booking_platform.write_calls("release") == []
