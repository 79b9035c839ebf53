"""The real parts every later test stands on actually work (and refuse what they must)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

import pytest
import requests
import serial
from gpiozero import LED, Button

from hub.provision import pki
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto, TlsFiles
from testkit.mqttclient import ConnectRefused, TestClient
from testkit.serialpty import PtyPort
from testkit.util import wait_for
from wire.topics import Kind, topic

Client = Callable[..., TestClient]


# --- Mosquitto ---------------------------------------------------------------------------


def test_broker_carries_a_message_from_publisher_to_subscriber(broker: Mosquitto, mqtt_client: Client) -> None:
    sub = mqtt_client(broker)
    sub.subscribe("torwart/v1/site/+/event")
    pub = mqtt_client(broker)
    rc = pub.publish(topic("minheim", Kind.EVENT), b'{"hello":1}')
    assert rc is not None and not rc.is_failure
    msg = sub.expect(timeout=5)
    assert msg.topic == "torwart/v1/site/minheim/event"
    assert msg.payload == b'{"hello":1}'


def test_broker_keeps_retained_messages_across_a_restart_and_a_kill(broker: Mosquitto, mqtt_client: Client) -> None:
    pub = mqtt_client(broker)
    pub.publish(topic("minheim", Kind.STATUS), b'{"state":"online"}', retain=True)
    pub.close()
    port = broker.port
    broker.restart()
    assert broker.port == port
    sub = mqtt_client(broker)
    sub.subscribe(topic("minheim", Kind.STATUS))
    assert sub.expect(timeout=5).payload == b'{"state":"online"}'
    sub.close()
    broker.restart(hard=True)  # SIGKILL, then start again on the same port
    assert broker.starts == 3
    sub2 = mqtt_client(broker)
    sub2.subscribe(topic("minheim", Kind.STATUS))
    assert sub2.expect(timeout=5).retain


def test_broker_holds_queued_messages_for_a_persistent_session_over_a_restart(
    broker: Mosquitto, mqtt_client: Client
) -> None:
    hub = mqtt_client(broker, client_id="hub-1", clean_start=False, session_expiry=3600)
    hub.subscribe("torwart/v1/site/+/event", qos=1)
    hub.close()
    pub = mqtt_client(broker)
    pub.publish(topic("minheim", Kind.EVENT), b"queued while the hub was away", qos=1)
    pub.close()
    broker.restart()  # clean stop: Mosquitto writes its persistence file
    hub2 = mqtt_client(broker, client_id="hub-1", clean_start=False, session_expiry=3600)
    assert hub2.expect(timeout=5).payload == b"queued while the hub was away"


def test_acl_broker_lets_a_site_use_its_own_topics_only(
    auth_broker: Mosquitto, site_passwords: dict[str, str], mqtt_client: Client
) -> None:
    hub = mqtt_client(auth_broker, username="hub", password=site_passwords["hub"])
    hub.subscribe("torwart/v1/site/+/event")
    a = mqtt_client(auth_broker, username="site-a", password=site_passwords["site-a"])

    a.publish(topic("site-b", Kind.EVENT), b"forged for b")  # forbidden: another site's topic
    a.publish(topic("site-a", Kind.EVENT), b"own event")  # allowed
    assert hub.expect(timeout=5).payload == b"own event"  # the forged one never arrived first
    assert hub.drain() == []

    # The hub's retained cache for site-b reaches site-b, never site-a (Mosquitto 2.0 grants
    # the subscription and filters at delivery, so the test watches delivery).
    hub.publish(topic("site-b", Kind.CACHE), b"cache of b", retain=True)
    b = mqtt_client(auth_broker, username="site-b", password=site_passwords["site-b"])
    b.subscribe(topic("site-b", Kind.CACHE))
    assert b.expect(timeout=5).payload == b"cache of b"
    a.subscribe(topic("site-b", Kind.CACHE))
    a.subscribe("torwart/v1/site/+/cache")
    # A site may not write its own cache (only the hub may), nor read another site's events.
    a.publish(topic("site-a", Kind.CACHE), b"self-made cache")
    a.subscribe(topic("site-b", Kind.EVENT))
    b.publish(topic("site-b", Kind.EVENT), b"b's event")
    assert hub.expect(timeout=5).payload == b"b's event"  # delivered to the hub, so a had its chance
    hub.subscribe(topic("site-a", Kind.CACHE))
    assert a.drain() == []
    with pytest.raises(TimeoutError):
        hub.expect(topic("site-a", Kind.CACHE), timeout=0.5)


def test_acl_broker_refuses_a_wrong_password_and_anonymous_clients(
    auth_broker: Mosquitto, mqtt_client: Client
) -> None:
    with pytest.raises(ConnectRefused):
        mqtt_client(auth_broker, username="site-a", password="not-the-password")
    with pytest.raises(ConnectRefused):
        mqtt_client(auth_broker)


def test_tls_broker_accepts_a_client_certificate_from_its_ca(
    tls_broker: Mosquitto, tls_files: TlsFiles, mqtt_client: Client
) -> None:
    cert, key = tls_files.client("hub")
    hub = mqtt_client(tls_broker, ca_file=tls_files.ca_file, cert_file=cert, key_file=key)
    hub.subscribe("torwart/v1/site/+/status")
    cert_a, key_a = tls_files.client("site-a")
    a = mqtt_client(tls_broker, ca_file=tls_files.ca_file, cert_file=cert_a, key_file=key_a)
    a.publish(topic("site-a", Kind.STATUS), b"up")
    assert hub.expect(timeout=5).payload == b"up"


def test_tls_broker_refuses_a_client_without_a_certificate(
    tls_broker: Mosquitto, tls_files: TlsFiles, mqtt_client: Client
) -> None:
    with pytest.raises(ConnectRefused):
        mqtt_client(tls_broker, ca_file=tls_files.ca_file, timeout=5)


def test_tls_broker_refuses_a_certificate_from_another_ca(
    tls_broker: Mosquitto, tls_files: TlsFiles, mqtt_client: Client
) -> None:
    rogue_ca = pki.make_ca("Rogue CA")
    cert, key = tls_files.client("site-a", ca=rogue_ca)
    with pytest.raises(ConnectRefused):
        mqtt_client(tls_broker, ca_file=tls_files.ca_file, cert_file=cert, key_file=key, timeout=5)


# --- pty ---------------------------------------------------------------------------------


def test_pty_carries_bytes_both_ways_through_pyserial(pty_port: PtyPort) -> None:
    with serial.Serial(pty_port.path, 9600, timeout=1) as ser:
        frame = bytes([0x02]) + b"0A00B1C2D3" + b"00" + bytes([0x03]) + bytes(range(256))
        pty_port.write(frame)
        assert ser.read(len(frame)) == frame  # raw: no byte translated or swallowed
        ser.write(b"\x00\x00\xff\x00\xff\x00")
        ser.flush()
        assert pty_port.read_exactly(6) == b"\x00\x00\xff\x00\xff\x00"


def test_unplugged_pty_makes_pyserial_fail(pty_port: PtyPort) -> None:
    ser = serial.Serial(pty_port.path, 9600, timeout=0.5)
    try:
        pty_port.unplug()
        with pytest.raises(serial.SerialException):
            for _ in range(5):  # the first read may still return buffered nothing
                ser.read(1)
                ser.write(b"x")
    finally:
        ser.close()


# --- gpiozero mock pins --------------------------------------------------------------------


def test_mock_pins_drive_outputs_and_deliver_input_edges(mock_pins: object) -> None:
    relay = LED(17)
    relay.on()
    assert mock_pins.pin(17).state == 1  # type: ignore[attr-defined]
    relay.off()
    assert mock_pins.pin(17).state == 0  # type: ignore[attr-defined]

    pressed: list[bool] = []
    button = Button(27, pull_up=True)
    button.when_pressed = lambda: pressed.append(True)
    mock_pins.pin(27).drive_low()  # type: ignore[attr-defined]
    wait_for(lambda: pressed, timeout=2, what="button callback")
    assert button.is_pressed


# --- booking platform fake ------------------------------------------------------------------


def _fill(p: BookingPlatform, n: int) -> None:
    t0 = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
    for i in range(n):
        p.add(f"b{i:03d}", "room-1", f"m{i}", t0 + dt.timedelta(hours=i), t0 + dt.timedelta(hours=i + 1))


def _get(p: BookingPlatform, **params: str) -> requests.Response:
    return requests.get(p.base_url + "/api/v1/bookings", params=params,
                        headers={"Authorization": f"Bearer {p.token}"}, timeout=5)


def test_booking_fake_pages_through_three_pages() -> None:
    with BookingPlatform(page_size=4) as p:
        _fill(p, 11)
        seen: list[str] = []
        pages = 0
        token: str | None = None
        while True:
            r = _get(p, **({"page_token": token} if token else {}))
            assert r.status_code == 200
            doc = r.json()
            pages += 1
            seen += [b["id"] for b in doc["items"]]
            token = doc["next_page_token"]
            if token is None:
                break
        assert pages == 3
        assert sorted(seen) == [f"b{i:03d}" for i in range(11)]


def test_booking_fake_filters_by_updated_since_and_shows_cancellations(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 3)
    mark = booking_platform.bookings["b002"]["updated_at"]
    booking_platform.cancel("b000")
    ids = [b["id"] for b in _get(booking_platform, updated_since=mark).json()["items"]]
    assert ids == ["b002", "b000"]
    assert _get(booking_platform).json()["items"][-1]["status"] == "cancelled"


def test_booking_fake_refuses_a_wrong_token(booking_platform: BookingPlatform) -> None:
    r = requests.get(booking_platform.base_url + "/api/v1/bookings",
                     headers={"Authorization": "Bearer " + secrets.token_hex(8)}, timeout=5)
    assert r.status_code == 401


def test_booking_fake_fails_on_demand_then_recovers(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 2)
    booking_platform.fail("status", status=503)
    assert _get(booking_platform).status_code == 503
    booking_platform.fail("garbage")
    with pytest.raises(ValueError):
        _get(booking_platform).json()
    booking_platform.fail("truncated")
    with pytest.raises(ValueError):
        _get(booking_platform).json()
    booking_platform.fail("wrong_types")
    assert _get(booking_platform).json()["items"] == {"not": "a list"}
    booking_platform.fail("rate_limit", retry_after=7)
    r = _get(booking_platform)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "7")
    booking_platform.fail("timeout", seconds=3)
    with pytest.raises(requests.Timeout):
        requests.get(booking_platform.base_url + "/api/v1/bookings", timeout=0.3,
                     headers={"Authorization": f"Bearer {booking_platform.token}"})
    assert [b["id"] for b in _get(booking_platform).json()["items"]] == ["b000", "b001"]


def test_booking_fake_can_loop_its_pages(booking_platform: BookingPlatform) -> None:
    booking_platform.page_size = 1
    _fill(booking_platform, 3)
    booking_platform.fail("page_loop", times=None)
    first = _get(booking_platform).json()
    again = _get(booking_platform, page_token=first["next_page_token"]).json()
    assert again["next_page_token"] == first["next_page_token"]
    booking_platform.heal()
    assert _get(booking_platform, page_token=first["next_page_token"]).json()["next_page_token"] != \
        first["next_page_token"]


def test_booking_fake_records_check_ins_and_releases(booking_platform: BookingPlatform) -> None:
    _fill(booking_platform, 1)
    h = {"Authorization": f"Bearer {booking_platform.token}"}
    base = booking_platform.base_url + "/api/v1/bookings/"
    assert requests.post(base + "b000/check-in", json={"at": "2026-11-23T08:01:00Z"}, headers=h,
                         timeout=5).status_code == 204
    assert requests.post(base + "b000/release", json={"reason": "no_show"}, headers=h, timeout=5).status_code == 204
    assert requests.post(base + "nope/check-in", json={}, headers=h, timeout=5).status_code == 404
    assert booking_platform.checkins == [("b000", {"at": "2026-11-23T08:01:00Z"})]
    assert booking_platform.releases == [("b000", {"reason": "no_show"})]
    assert booking_platform.bookings["b000"]["status"] == "cancelled"
