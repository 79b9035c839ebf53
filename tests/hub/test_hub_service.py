"""The running hub (real Mosquitto, real booking fake): exactly-once ingest with
contiguous acks and gap reports, and a failing platform that never empties a cache."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, hub_store: str) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim", "wittlich"), store=hub_store)


@pytest.fixture
def hub(county: County) -> Iterator[HubThread]:
    with HubThread(county) as h:
        yield h


def event(site: str, seq: int) -> bytes:
    return m.encode(m.DoorOpened(id=uuid.uuid4().hex, site=site, seq=seq, boot="b", ts=1_800_000_000.0 + seq,
                                 clock_synced=True, door="eingang"))


def test_replayed_and_shuffled_events_are_stored_once_and_acked_contiguously(
    hub: HubThread, broker: Mosquitto, mqtt_client: type[TestClient]
) -> None:
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    payloads = {seq: event("minheim", seq) for seq in range(1, 301)}
    order = list(payloads) * 2  # the whole outbox, twice
    random.Random(5).shuffle(order)
    for seq in order:
        site.publish(topic("minheim", Kind.EVENT), payloads[seq])

    def acked(upto: int) -> bool:
        return any(m.decode(msg.payload, m.EventAck).upto == upto for msg in site.drain())

    wait_for(lambda: acked(300), 20, what="ack up to 300")
    stats = hub.service.ingest.stats
    # The ack for 300 can come before the last replays are in: wait until all 600 were seen.
    wait_for(lambda: stats.events_new + stats.events_duplicate == 600, 20, what="every replay handled")
    store = open_store(hub.service.cfg.hub.store_url)
    try:
        state = store.site_state("minheim")
        assert state is not None
        assert (state.acked_upto, state.max_seq, state.gaps) == (300, 300, ())
        assert len(store.events(site_id="minheim", limit=10_000)) == 300
        assert (stats.events_new, stats.events_duplicate) == (300, 300)

        # A real gap: 301 never arrives. The hub keeps acking 300 and reports 301 missing.
        for seq in range(302, 311):
            site.publish(topic("minheim", Kind.EVENT), event("minheim", seq))
        wait_for(lambda: (s := store.site_state("minheim")) is not None and s.max_seq == 310, 20,
                 what="events after the gap stored")
        state = store.site_state("minheim")
        assert state is not None and (state.acked_upto, state.gaps) == (300, ((301, 301),))
        acks: list[int] = []
        # The store shows the events before the hub's ack reaches this client: wait for it.
        wait_for(lambda: acks.extend(m.decode(x.payload, m.EventAck).upto for x in site.drain()) or acks, 20,
                 what="the acks after the gap")
        assert max(acks) == 300
        site.publish(topic("minheim", Kind.EVENT), event("minheim", 301))  # the site resends it
        wait_for(lambda: acked(310), 20, what="ack up to 310 once the gap is filled")
        state = store.site_state("minheim")
        assert state is not None and (state.acked_upto, state.gaps) == (310, ())
    finally:
        store.close()


@pytest.mark.parametrize("payload", [
    b"not json", b'{"type":"door.opened"}', b"\xff\xfe",
    event("wittlich", 1),  # names another site than its topic
])
def test_malformed_site_messages_are_kept_aside_or_dropped_and_the_hub_carries_on(
    hub: HubThread, broker: Mosquitto, mqtt_client: type[TestClient], payload: bytes
) -> None:
    site = mqtt_client(broker)  # type: ignore[call-arg]
    site.subscribe(topic("minheim", Kind.EVENT_ACK))
    stats = hub.service.ingest.stats
    dropped = stats.dropped + stats.quarantined
    site.publish(topic("minheim", Kind.EVENT), payload)
    site.publish(topic("minheim", Kind.STATUS), payload)
    site.publish(topic("minheim", Kind.EVENT), event("minheim", 1))
    # A good status after the bad one, on the same topic: MQTT keeps their order, so once it
    # is recorded the bad one has been handled before it.
    site.publish(topic("minheim", Kind.STATUS), m.encode(m.Status(state="online", ts=1.0, boot="after-garbage")))
    wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto == 1 for x in site.drain()), 20,
             what="the good event acked after the bad one")
    store = open_store(hub.service.cfg.hub.store_url)
    try:
        wait_for(lambda: (st := store.site_state("minheim")) is not None and st.boot == "after-garbage", 30,
                 what="the good status recorded after the bad one")
        # The good event is stored, also where the bad one claimed its seq (kept aside, counted).
        assert [(e.seq, e.type) for e in store.events(site_id="minheim")] == [(1, "door.opened")]
        assert len(store.quarantine("minheim")) == 1
    finally:
        store.close()
    assert stats.dropped + stats.quarantined >= dropped + 2  # the bad event and the bad status


@pytest.mark.parametrize(("fault", "params"), [
    ("status", {"status": 500}),
    ("timeout", {"seconds": 3}),
    ("truncated", {}),
    ("garbage", {}),
    ("wrong_types", {}),
    ("page_loop", {}),
])
def test_a_failing_platform_never_empties_a_cache_and_recovery_follows(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, fault: str, params: dict[str, float]
) -> None:
    # A short client timeout: the "timeout" fault (3 s) then times out for real, and fast.
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), booking={"timeout_seconds": 1})
    now = dt.datetime.now(dt.UTC)
    booking_platform.page_size = 2
    for i in range(5):
        booking_platform.add(f"bk-{i}", county.resource("minheim"), "m-1", now, now + dt.timedelta(hours=1))
    with HubThread(county) as hub:
        svc = hub.service
        svc.call(lambda: svc.store.add_member("m-1", "Member One"))
        svc.call(lambda: svc.store.add_credential("m-1", "em4100:0A00B1C2D3"))
        assert svc.call(svc.sync_now).ok
        svc.call(lambda: svc.hub.changed({"minheim"}))
        before = svc.call(lambda: svc.hub.caches.entries("minheim", int(now.timestamp())))
        version = svc.call(lambda: svc.hub.caches.latest_version("minheim"))
        assert len(before) == 5

        booking_platform.fail(fault, times=None, **params)  # until healed
        report = svc.call(svc.sync_now, timeout=120)
        assert not report.ok and report.error
        state = svc.call(lambda: svc.store.get_sync_state(svc.hub.booking_sync.source))
        assert state.failures >= 1 and state.last_error
        # Nothing was thrown away: same bookings, same cache version and entries.
        assert svc.call(lambda: svc.hub.caches.latest_version("minheim")) == version
        assert svc.call(lambda: svc.hub.caches.entries("minheim", int(now.timestamp()))) == before

        booking_platform.heal()
        booking_platform.cancel("bk-0")
        report = svc.call(svc.sync_now, timeout=60)
        assert report.ok and "bk-0" in report.changed
        assert svc.call(lambda: svc.store.get_sync_state(svc.hub.booking_sync.source)).failures == 0
        assert len(svc.call(lambda: svc.hub.caches.entries("minheim", int(now.timestamp())))) == 4


def test_a_check_in_at_the_room_is_reported_to_the_platform(
    hub: HubThread, broker: Mosquitto, booking_platform: BookingPlatform, county: County,
    mqtt_client: type[TestClient]
) -> None:
    now = dt.datetime.now(dt.UTC)
    booking_platform.add("bk-9", county.resource("minheim"), "m-1", now, now + dt.timedelta(hours=1))
    assert hub.service.call(hub.service.sync_now).ok  # the hub reports check-ins of bookings it knows
    site = mqtt_client(broker)  # type: ignore[call-arg]
    ev = m.OccupancyCheckin(id=uuid.uuid4().hex, site="minheim", seq=1, boot="b", ts=now.timestamp(),
                            clock_synced=True, room="coworking", who="m-abc", ref="bk-9", reason="badge")
    site.publish(topic("minheim", Kind.EVENT), m.encode(ev))
    wait_for(lambda: booking_platform.checkins, 20, what="the check-in at the platform")
    ref, body = booking_platform.checkins[0]
    assert ref == "bk-9"
    assert dt.datetime.fromisoformat(body["at"]).timestamp() == pytest.approx(now.timestamp(), abs=1)


def test_two_hub_workers_split_ingest_through_a_shared_subscription(
    county: County, broker: Mosquitto, mqtt_client: type[TestClient]
) -> None:
    import msgspec

    from hub import config as hub_config
    from testkit.util import free_port

    base = hub_config.load(county.hub_config_path)

    def worker(n: int) -> hub_config.HubConfig:
        return msgspec.structs.replace(
            base, mqtt=msgspec.structs.replace(base.mqtt, client_id=f"hub-worker-{n}", shared_subscription=True),
            http=msgspec.structs.replace(base.http, listen=f"127.0.0.1:{free_port()}"))

    with HubThread(county, worker(1)) as one, HubThread(county, worker(2)) as two:
        wait_for(lambda: one.service.link.connected and two.service.link.connected, 20, what="both connected")
        site = mqtt_client(broker)  # type: ignore[call-arg]
        site.subscribe(topic("minheim", Kind.EVENT_ACK))
        for seq in range(1, 401):
            site.publish(topic("minheim", Kind.EVENT), event("minheim", seq))
        wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto == 400 for x in site.drain()), 30,
                 what="ack up to 400")
        a, b = one.service.ingest.stats, two.service.ingest.stats
        assert a.events_new > 0 and b.events_new > 0  # the load was split
        assert a.events_new + b.events_new == 400  # and nothing was stored twice
        store = open_store(base.hub.store_url)
        try:
            assert len(store.events(site_id="minheim", limit=1000)) == 400
        finally:
            store.close()
