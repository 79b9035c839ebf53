"""Event streams and odd events at the running hub (real Mosquitto, real hub service, a
real outbox on the site's side): an event of a type the hub does not know is stored and
acknowledged past; garbage on the event topic is kept aside and never holds back the ack;
an old site without streams and an upgraded outbox keep working (PROTOCOL.md §4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from edge.outbox import Outbox
from hub.__main__ import main
from hub.store import Store, open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from tests.edge.test_outbox_streams import old_outbox
from wire import messages as m
from wire.topics import Kind, topic

SITE = "minheim"
T0 = 1_800_000_000.0


class OldEventAck(msgspec.Struct):
    """``event/ack`` as a site from before streams decodes it."""

    upto: int


class OutboxSite:
    """A site's outbox and its MQTT side: publishes what is pending, applies the hub's acks."""

    def __init__(self, outbox: Outbox, client: TestClient) -> None:
        self.outbox = outbox
        self.client = client
        self.acks: list[dict[str, object]] = []
        client.subscribe(topic(SITE, Kind.EVENT_ACK))

    def publish(self, raw: bytes) -> None:
        self.client.publish(topic(SITE, Kind.EVENT), raw)

    def send_pending(self) -> None:
        for _, raw in self.outbox.pending():
            self.publish(raw)

    def pump(self) -> list[dict[str, object]]:
        """Apply the acks that came (as edge.events.EventStream.on_ack does); return them."""
        for msg in self.client.drain():
            ack = m.decode(msg.payload, m.EventAck)
            self.acks.append(msgspec.json.decode(msg.payload))
            self.outbox.ack(ack.upto, None if ack.stream is m.UNSET else ack.stream)
        return self.acks

    def drained(self, timeout: float = 20) -> None:
        wait_for(lambda: self.pump() is not None and self.outbox.pending_count() == 0, timeout,
                 what="the outbox drained by the hub's acks")


def inject(outbox: Outbox, type_: str, **fields: object) -> bytes:
    """Commit an event the way a newer agent would, of a type this code does not know."""
    conn = sqlite3.connect(outbox.path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (last,) = conn.execute("SELECT last_seq FROM meta WHERE k = 1").fetchone()
        doc = {"type": type_, "id": f"newer-{last + 1}", "site": SITE, "stream": outbox.stream, "seq": last + 1,
               "boot": "newer", "ts": T0, "clock_synced": True, **fields}
        data = msgspec.json.encode(doc)
        conn.execute("INSERT INTO events (seq, id, type, ts, data) VALUES (?, ?, ?, ?, ?)",
                     (last + 1, doc["id"], type_, T0, data))
        conn.execute("UPDATE meta SET last_seq = ? WHERE k = 1", (last + 1,))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return data


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, (SITE,))


@pytest.fixture
def hub(county: County) -> Iterator[HubThread]:
    with HubThread(county) as h:
        yield h


@pytest.fixture
def store(hub: HubThread) -> Iterator[Store]:
    s = open_store(hub.service.cfg.hub.store_url)
    yield s
    s.close()


def door(o: Outbox) -> bytes:
    return o.emit("door.opened", ts=T0, clock_synced=True, door="eingang")


def sites_output(county: County, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["sites", "--config", str(county.hub_config_path)]) == 0
    return capsys.readouterr().out


def test_an_event_of_a_type_the_hub_does_not_know_is_stored_counted_and_acked_past(
    hub: HubThread, store: Store, county: County, broker: Mosquitto, mqtt_client: type[TestClient],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with Outbox(tmp_path / "outbox.db", SITE, "b") as ob:
        site = OutboxSite(ob, mqtt_client(broker))  # type: ignore[call-arg]
        door(ob)
        door(ob)
        newer = inject(ob, "door.exploded", door="eingang", debris={"pieces": 7}, severity="high")
        door(ob)
        door(ob)
        site.send_pending()
        site.drained()
        assert site.acks[-1] == {"stream": ob.stream, "upto": 5}
    events = {e.seq: e for e in store.events(site_id=SITE)}
    assert sorted(events) == [1, 2, 3, 4, 5]
    assert (events[3].type, events[3].payload) == ("door.exploded", newer.decode())
    assert events[3].stream == site.outbox.stream
    state = store.site_state(SITE)
    assert state is not None
    assert (state.stream, state.acked_upto, state.gaps, state.unknown_types) == (site.outbox.stream, 5, (), 1)
    assert hub.service.ingest.stats.unknown_types == 1
    assert "1 events of types this hub does not know" in sites_output(county, capsys)


def test_garbage_on_the_event_topic_is_kept_aside_and_never_holds_back_the_ack(
    hub: HubThread, store: Store, county: County, broker: Mosquitto, mqtt_client: type[TestClient],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with Outbox(tmp_path / "outbox.db", SITE, "b") as ob:
        site = OutboxSite(ob, mqtt_client(broker))  # type: ignore[call-arg]
        raws = [door(ob) for _ in range(5)]
        site.publish(raws[0])
        site.publish(raws[1])
        # Seq 3 arrives broken (its common fields missing), and a message with no readable seq.
        broken = msgspec.json.encode({"type": "door.opened", "site": SITE, "stream": ob.stream, "seq": 3})
        site.publish(broken)
        site.publish(b"\xffnot json at all")
        site.publish(raws[3])
        site.publish(raws[4])
        site.drained()
        assert site.acks[-1] == {"stream": ob.stream, "upto": 5}
        state = store.site_state(SITE)
        assert state is not None and (state.acked_upto, state.gaps, state.quarantined) == (5, (), 2)
        assert [e.seq for e in reversed(store.events(site_id=SITE))] == [1, 2, 4, 5]
        kept = store.quarantine(SITE)
        assert [(q.stream, q.seq, q.payload) for q in kept] == [(None, None, b"\xffnot json at all"),
                                                                (ob.stream, 3, broken)]
        assert all(q.why for q in kept)
        assert "2 messages on the event topic were not events" in sites_output(county, capsys)
        # The real seq 3 coming after all (resent by hand) is stored: the broken one was not it.
        site.publish(raws[2])
        wait_for(lambda: len(store.events(site_id=SITE)) == 5, 20, what="the late seq 3 stored")


def test_an_old_site_without_streams_is_stored_and_acked_in_the_legacy_stream(
    hub: HubThread, store: Store, broker: Mosquitto, mqtt_client: type[TestClient], tmp_path: Path,
) -> None:
    old = old_outbox(tmp_path / "old.db", n=3, acked=0)  # the bytes a site from before streams sends
    client = mqtt_client(broker)  # type: ignore[call-arg]
    client.subscribe(topic(SITE, Kind.EVENT_ACK))
    for raw in old:
        client.publish(topic(SITE, Kind.EVENT), raw)
    acks: list[bytes] = []
    wait_for(lambda: acks.extend(x.payload for x in client.drain()) or (acks and b'"upto":3' in acks[-1]), 20,
             what="the ack up to 3")
    assert msgspec.json.decode(acks[-1]) == {"stream": "", "upto": 3}
    assert msgspec.json.decode(acks[-1], type=OldEventAck).upto == 3  # what the old site reads of it
    assert [(e.stream, e.seq) for e in reversed(store.events(site_id=SITE))] == [("", 1), ("", 2), ("", 3)]
    state = store.site_state(SITE)
    assert state is not None and (state.stream, state.acked_upto) == ("", 3)


def test_an_upgraded_outbox_continues_its_legacy_numbering_without_a_gap_or_a_loss(
    hub: HubThread, store: Store, county: County, broker: Mosquitto, mqtt_client: type[TestClient],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "outbox.db"
    old = old_outbox(path, n=7, acked=0)
    client = mqtt_client(broker)  # type: ignore[call-arg]
    client.subscribe(topic(SITE, Kind.EVENT_ACK))
    for raw in old[:5]:  # the old site sent 1-5 and got them acknowledged; 6 and 7 wait in its outbox
        client.publish(topic(SITE, Kind.EVENT), raw)
    wait_for(lambda: any(b'"upto":5' in x.payload for x in client.drain()), 20, what="the legacy ack up to 5")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET acked_upto = 5")  # what the old site's outbox did with that ack
    conn.commit()
    conn.close()

    with Outbox(path, SITE, "upgraded") as ob:  # the site's software is upgraded
        site = OutboxSite(ob, client)
        door(ob)
        site.send_pending()
        site.drained()
        assert site.acks[-1] == {"stream": ob.stream, "upto": 8}
        streams = {s.stream: s for s in store.event_streams(SITE)}
        assert set(streams) == {"", ob.stream}
        assert (streams[""].acked_upto, streams[""].gaps) == (5, ())
        assert (streams[ob.stream].base, streams[ob.stream].acked_upto, streams[ob.stream].gaps) == (5, 8, ())
        stored = sorted((e.stream, e.seq) for e in store.events(site_id=SITE))
        assert stored == [("", s) for s in range(1, 6)] + [(ob.stream, s) for s in range(6, 9)]
        out = sites_output(county, capsys)
        assert f"stream {ob.stream[:8]}… continues the site's numbering after seq 5" in out
        assert "reset" not in out


def test_the_dashboards_site_page_shows_a_reset_site_in_both_languages(
    hub: HubThread, store: Store, county: County, broker: Mosquitto, mqtt_client: type[TestClient],
    tmp_path: Path,
) -> None:
    from testkit.dashboard import add_user, login

    client = mqtt_client(broker)  # type: ignore[call-arg]
    streams = []
    for name in ("before", "after"):  # the Pi, then the same Pi reinstalled: a new outbox
        with Outbox(tmp_path / f"{name}.db", SITE, name) as ob:
            site = OutboxSite(ob, client)
            for _ in range(3 if name == "before" else 2):
                door(ob)
            site.send_pending()
            site.drained()
            streams.append(ob.stream)
    page = login(county.http_url, "boss", add_user(county, "boss", "admin"))
    en = page.get(county.http_url + f"/sites/{SITE}?lang=en", timeout=10)
    assert en.status_code == 200
    assert ("Site was reset at" in en.text and f"new event stream {streams[1][:8]}…" in en.text
            and f"previous stream {streams[0][:8]}… acknowledged up to no. 3" in en.text)
    de = page.get(county.http_url + f"/sites/{SITE}?lang=de", timeout=10)
    assert "Standort wurde neu aufgesetzt am" in de.text and f"neuer Ereignisstrom {streams[1][:8]}…" in de.text
    snap = page.get(county.http_url + f"/api/v1/sites/{SITE}", timeout=10).json()
    assert snap["stream"]["new"] == f"{streams[1][:8]}…" and snap["stream"]["previous_acked"] == 3
