"""A compromised site (one hall's broker login, used only as its ACL allows) against the
real hub on a real Mosquitto 2.0 (testkit's broker: the sites' listener ties every client
id to its login, the hub has a listener of its own, as on the shipped drop-in):

- it cannot take a hub process's, the hub's command line's or another site's client id,
  while the hub runs several processes (shared subscription) and its command line opens
  connections of its own under the same hub login, and both keep working;
- joining the hub's share group under its known old name (``$share/hub/...``), from
  several connections, takes no share of another site's events: the hub gets every one
  at once, without a site resending, and the intruders get none; a hub process whose
  persistent session is still in that old group leaves it.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from hub import config as hub_config
from hub.__main__ import main as hub_main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.mqttclient import TestClient
from testkit.util import free_port, wait_for
from wire import messages as m
from wire.topics import ROOT, Kind, shared, site_filter, topic

SITES = ("minheim", "wittlich", "bernkastel", "traben", "zell")
VICTIM, SENDER = "minheim", "wittlich"
INTRUDERS = ("bernkastel", "traben", "zell")


@pytest.fixture
def users() -> dict[str, str]:
    return {u: secrets.token_urlsafe(12) for u in ("hub", *SITES)}


@pytest.fixture
def pw_broker(tmp_path: Path, users: dict[str, str]) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker", users=users) as b:
        yield b


@pytest.fixture
def county(tmp_path: Path, pw_broker: Mosquitto, booking_platform: BookingPlatform, users: dict[str, str]) -> County:
    return make_county(tmp_path, pw_broker, booking_platform, SITES, mqtt_users=users)


@contextlib.contextmanager
def workers(county: County, n: int = 2) -> Iterator[list[HubThread]]:
    """``n`` hub processes' services splitting the ingest through the shared subscription."""
    base = hub_config.load(county.hub_config_path)
    with contextlib.ExitStack() as stack:
        threads = []
        for i in range(n):
            cfg = msgspec.structs.replace(
                base, mqtt=msgspec.structs.replace(base.mqtt, client_id=f"torwart-hub-w{i}", shared_subscription=True),
                http=msgspec.structs.replace(base.http, listen=f"127.0.0.1:{free_port()}"))
            threads.append(stack.enter_context(HubThread(county, cfg)))
        wait_for(lambda: all(t.service.link.connected for t in threads), 20, what="every hub process connected")
        yield threads


def site_client(broker: Mosquitto, users: dict[str, str], site: str, client_id: str = "") -> TestClient:
    return TestClient(broker.host, broker.port, client_id=client_id or f"torwart-site-{site}", username=site,
                      password=users[site])


def event(site: str, seq: int) -> bytes:
    return m.encode(m.DoorOpened(id=uuid.uuid4().hex, site=site, seq=seq, boot="b", ts=1_800_000_000.0 + seq,
                                 clock_synced=True, door="eingang"))


def thrown_off(broker: Mosquitto) -> set[str]:
    """The client ids the broker threw off because a newer connection took them."""
    lines = broker.log_path.read_text(errors="replace").splitlines()
    return {ln.split("Client ", 1)[1].split(" ")[0] for ln in lines if "already connected, closing old" in ln}


def test_a_site_cannot_take_client_ids_while_hub_processes_and_the_command_line_share_the_hub_login(
    county: County, pw_broker: Mosquitto, users: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(county.hub_config_path)
    site = county.sites[VICTIM]
    site.start()
    try:
        with workers(county) as (one, two), contextlib.ExitStack() as stack:
            watch = stack.enter_context(TestClient(pw_broker.host, pw_broker.hub_port, client_id="torwart-hub-watch",
                                                   username="hub", password=users["hub"]))
            watch.subscribe(topic(VICTIM, Kind.STATUS))
            wait_for(lambda: any(b'"online"' in x.payload for x in watch.drain()), 30, what="the site online")
            # The compromised site's login tries every other client's id in turn (each new
            # connection of its own login replaces its previous one, nothing else). Each is
            # closed once the next has taken over, so that paho does not reconnect it and
            # keep throwing off the site's later connections (all of them are one client id).
            previous: TestClient | None = None
            for cid in ("torwart-hub-w0", "torwart-hub-w1", f"torwart-site-{VICTIM}", VICTIM, "torwart-hub"):
                intruder = site_client(pw_broker, users, SENDER, cid)
                if previous is not None:
                    previous.close()
                previous = intruder
            assert previous is not None
            previous.close()
            # The command line, beside the two running processes, under the same hub login.
            assert hub_main(["cards", "add", "--config", cfg, "m-1", "em4100:0A00B1C2D3", "--name", "Anna"]) == 0
            assert hub_main(["push", VICTIM, "--config", cfg, "--timeout", "20"]) == 0
            assert "now holds version" in capsys.readouterr().out
            assert hub_main(["unlock", VICTIM, "eingang", "--seconds", "2", "--config", cfg]) == 0

            # And the processes still split the ingest between them.
            sender = stack.enter_context(site_client(pw_broker, users, SENDER))
            sender.subscribe(topic(SENDER, Kind.EVENT_ACK))
            sent = {seq: event(SENDER, seq) for seq in range(1, 201)}
            for payload in sent.values():
                sender.publish(topic(SENDER, Kind.EVENT), payload)
            acks: list[int] = []

            def acked_all() -> bool:
                acks.extend(m.decode(x.payload, m.EventAck).upto for x in sender.drain())
                return max(acks, default=0) >= 200

            try:
                wait_for(acked_all, 30, what="ack up to 200")
            except TimeoutError:
                with open_store(county.store_url) as store:
                    st = store.site_state(SENDER)
                raise AssertionError(f"acks seen: {acks[-10:]}; the store: acked_upto "
                                     f"{st and st.acked_upto}, max_seq {st and st.max_seq}, gaps {st and st.gaps}; "
                                     f"stored by the workers: {one.service.ingest.stats.events_new}, "
                                     f"{two.service.ingest.stats.events_new}") from None
            with open_store(county.store_url) as store:
                assert sorted(e.seq for e in store.events(site_id=SENDER, limit=1000)) == list(range(1, 201))
            a, b = one.service.ingest.stats, two.service.ingest.stats
            assert a.events_new > 0 and b.events_new > 0
            assert one.service.link.connected and two.service.link.connected
        # Only the compromised site's own earlier connections were thrown off: never a hub
        # process, the command line or the other site (its agent ran on all along).
        assert thrown_off(pw_broker) == {SENDER}
        assert site.proc is not None and site.proc.poll() is None
    finally:
        site.stop()


def test_sites_in_the_hubs_old_share_group_take_no_share_of_another_sites_events(
    county: County, pw_broker: Mosquitto, users: dict[str, str]
) -> None:
    with workers(county) as (one, two), contextlib.ExitStack() as stack:
        intruders = []
        for s in INTRUDERS:  # three sites' logins, each with a connection in the group
            c = stack.enter_context(site_client(pw_broker, users, s))
            c.subscribe(shared(site_filter(Kind.EVENT)))  # "$share/hub/torwart/v1/site/+/event"
            c.subscribe(shared(f"{ROOT}/#"))
            intruders.append(c)
        sender = stack.enter_context(site_client(pw_broker, users, SENDER))
        sender.subscribe(topic(SENDER, Kind.EVENT_ACK))
        for seq in range(1, 201):  # each sent once: the site never resends here
            sender.publish(topic(SENDER, Kind.EVENT), event(SENDER, seq))

        def acked() -> bool:
            return any(m.decode(x.payload, m.EventAck).upto == 200 for x in sender.drain())

        wait_for(acked, 30, what="the hub storing all 200 events (ack up to 200)")
        a, b = one.service.ingest.stats, two.service.ingest.stats
        assert a.events_new + b.events_new == 200 and a.events_new > 0 and b.events_new > 0
        store = open_store(one.service.cfg.hub.store_url)
        try:
            state = store.site_state(SENDER)
            assert state is not None and (state.acked_upto, state.gaps) == (200, ())
        finally:
            store.close()
        # Nothing of another site (Mosquitto 2.0.11 does hand a new shared subscription the
        # retained messages it may read: here each intruder's own cache, nothing else).
        for s, c in zip(INTRUDERS, intruders, strict=True):
            got = [x.topic for x in c.drain()]
            assert all(t == topic(s, Kind.CACHE) for t in got), (s, got)


def test_a_hub_process_leaves_the_old_share_group_its_session_still_holds(
    county: County, pw_broker: Mosquitto, users: dict[str, str]
) -> None:
    # A session of an earlier version, in the guessable group "hub", resumed by the new hub.
    old = TestClient(pw_broker.host, pw_broker.hub_port, client_id="torwart-hub-w0", username="hub",
                     password=users["hub"], clean_start=False, session_expiry=3600)
    old.subscribe(shared(site_filter(Kind.EVENT)))
    old.close()
    with workers(county) as (one, two), contextlib.ExitStack() as stack:
        for s in INTRUDERS:
            stack.enter_context(site_client(pw_broker, users, s)).subscribe(shared(site_filter(Kind.EVENT)))
        sender = stack.enter_context(site_client(pw_broker, users, SENDER))
        sender.subscribe(topic(SENDER, Kind.EVENT_ACK))
        for seq in range(1, 201):
            sender.publish(topic(SENDER, Kind.EVENT), event(SENDER, seq))
        wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto == 200 for x in sender.drain()), 30,
                 what="ack up to 200")
        a, b = one.service.ingest.stats, two.service.ingest.stats
        # Still in "hub", a process would get a second copy of its turns there: none came.
        assert (a.events_new + b.events_new, a.events_duplicate + b.events_duplicate) == (200, 0)
