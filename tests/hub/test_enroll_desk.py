"""``torwart-hub cards enroll`` at the admin's desk: a card read from a reader on this
computer (pty-backed RDM6300 and PN532 fakes, the site's own drivers), shown by its
printed number, confirmed, enrolled, and then opening a real site's door."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.__main__ import main
from hub.enroll import describe
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, make_county
from testkit.mqttclient import TestClient
from testkit.pn532_fake import FakePn532
from testkit.rdm6300_fake import FakeRdm6300, rdm6300_frame
from testkit.serialpty import PtyPort
from testkit.util import wait_for
from wire.topics import Kind, topic

Capsys = pytest.CaptureFixture[str]
EM_CARD = "0A00B1C2D3"
EM_PRINTED = "0011649747"  # 0x00B1C2D3 in decimal, as printed on the fob
UID = bytes.fromhex("04A1B2C3D4E5F6")


def run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim",))


def test_printed_numbers_are_what_is_on_the_card() -> None:
    assert describe(f"em4100:{EM_CARD}") == f"EM4100 card, printed number {EM_PRINTED} (or 177,49875)"
    assert describe("iso14443a:04A1B2C3D4E5F6") == "ISO 14443A card, UID 04A1B2C3D4E5F6"
    assert describe("wiegand26:B1C2D3") == "Wiegand 26 card, 177,49875"
    assert describe("pin:4821") == "a PIN of 4 digits"


# --- what goes wrong, and what the admin is told -----------------------------------------------------


@pytest.fixture
def rdm() -> Iterator[FakeRdm6300]:
    with FakeRdm6300() as f:
        yield f


def test_a_missing_device_a_non_serial_file_and_a_bad_reader_spec_are_explained(
    county: County, tmp_path: Path, capsys: Capsys
) -> None:
    cfg = str(county.hub_config_path)
    code, _, err = run(capsys, "cards", "enroll", "m-1", "--reader", "rdm6300:/dev/ttyUSB97", "--yes", "--config", cfg)
    assert code == 1 and "no reader at /dev/ttyUSB97: the device does not exist" in err
    plain = tmp_path / "notes.txt"
    plain.write_text("x")
    code, _, err = run(capsys, "cards", "enroll", "m-1", "--reader", f"pn532:{plain}", "--yes", "--config", cfg)
    assert code == 1 and "is not a serial port" in err
    code, _, err = run(capsys, "cards", "enroll", "m-1", "--reader", "pn532:/dev/null", "--yes", "--config", cfg)
    assert code == 1 and "/dev/null is not a serial port" in err
    code, _, err = run(capsys, "cards", "enroll", "m-1", "--reader", "acr122:/dev/null", "--yes", "--config", cfg)
    assert code == 1 and "TYPE:DEVICE" in err


def test_a_device_that_does_not_answer_like_a_pn532_is_named(county: County, rdm: FakeRdm6300,
                                                            capsys: Capsys) -> None:
    code, out, err = run(capsys, "cards", "enroll", "m-1", "--reader", f"pn532:{rdm.path}", "--yes",
                         "--config", str(county.hub_config_path))
    assert code == 1 and "does not answer like a PN532" in err and "hold the card" not in out


def test_no_card_times_out_and_garbage_is_hinted_at(county: County, rdm: FakeRdm6300, capsys: Capsys) -> None:
    cfg = str(county.hub_config_path)
    code, out, err = run(capsys, "cards", "enroll", "m-1", "--reader", f"rdm6300:{rdm.path}", "--yes",
                         "--timeout", "0.5", "--config", cfg)
    assert code == 1 and "hold the card to the reader" in out and "no card read within 0.5 s" in err
    stop = threading.Event()

    def noise() -> None:  # a device at another baud rate: a steady stream of junk
        while not stop.wait(0.05):
            rdm.write(b"\xff\xfe\x02garbage\x03\x00")

    t = threading.Thread(target=noise, daemon=True)
    t.start()
    try:
        code, _, err = run(capsys, "cards", "enroll", "m-1", "--reader", f"rdm6300:{rdm.path}", "--yes",
                           "--timeout", "0.5", "--config", cfg)
    finally:
        stop.set()
        t.join()
    assert code == 1 and "garbled frames arrived: is it a RDM6300 at 9600 baud?" in err


def test_without_a_terminal_it_asks_for_yes_before_touching_the_reader(county: County, rdm: FakeRdm6300,
                                                                      capsys: Capsys) -> None:
    rdm.present(EM_CARD)
    code, out, err = run(capsys, "cards", "enroll", "m-1", "--reader", f"rdm6300:{rdm.path}",
                         "--config", str(county.hub_config_path))
    assert code == 1 and "pass --yes" in err and out == ""


def test_on_a_terminal_the_admin_confirms_or_declines(county: County, rdm: FakeRdm6300, capsys: Capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = str(county.hub_config_path)
    tty = PtyPort()
    stdin = os.fdopen(os.dup(os.open(tty.path, os.O_RDWR)), "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        rdm.present(EM_CARD)
        tty.write(b"n\n")
        code, out, _ = run(capsys, "cards", "enroll", "m-1", "--name", "Anna", "--reader", f"rdm6300:{rdm.path}",
                           "--config", cfg)
        assert code == 1 and f"read: EM4100 card, printed number {EM_PRINTED}" in out
        assert "enroll this card to member m-1 (Anna)? [y/N]" in out and "not enrolled" in out
        with open_store(county.store_url) as store:
            assert store.get_member("m-1") is None  # declined: nothing was written
        tty.write(b"y\n")
        code, out, _ = run(capsys, "cards", "enroll", "m-1", "--name", "Anna", "--reader", f"rdm6300:{rdm.path}",
                           "--config", cfg)
        assert code == 0 and "member m-1 created" in out and "enrolled em4100 card" in out
        assert EM_CARD not in out
    finally:
        stdin.close()
        tty.close()


def test_a_card_enrolled_to_someone_else_names_that_member(county: County, capsys: Capsys) -> None:
    cfg = str(county.hub_config_path)
    assert run(capsys, "cards", "add", "m-1", f"em4100:{EM_CARD}", "--config", cfg)[0] == 0
    with FakePn532() as pn, FakeRdm6300() as rdm:
        rdm.present(EM_CARD)
        code, out, err = run(capsys, "cards", "enroll", "m-2", "--reader", f"rdm6300:{rdm.path}", "--yes",
                             "--config", cfg)
        assert code == 1 and "already enrolled to member 'm-1'" in err and "nothing enrolled" in err
        assert EM_CARD not in out + err
        pn.present(UID)
        code, out, _ = run(capsys, "cards", "enroll", "m-1", "--reader", f"pn532:{pn.path}", "--yes",
                           "--config", cfg)
        assert code == 0 and "read: ISO 14443A card, UID 04A1B2C3D4E5F6" in out
        code, out, _ = run(capsys, "cards", "enroll", "m-1", "--reader", f"pn532:{pn.path}", "--yes",
                           "--config", cfg)
        assert code == 0 and "has this card already" in out


# --- end to end: desk → cache → door ------------------------------------------------------------------


def test_cards_enrolled_at_the_desk_open_a_live_sites_door(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: Capsys
) -> None:
    site_rfid, site_nfc = PtyPort(), FakePn532()
    layout: dict[str, Any] = {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8}],
        "doors": [{"id": "eingang", "lock_pin": 17, "unlock_seconds": 1},
                  {"id": "coworking", "room": "coworking", "lock_pin": 5, "unlock_seconds": 1}],
        "readers": [{"id": "eingang-rfid", "type": "rdm6300", "door": "eingang", "port": site_rfid.path,
                     "holdoff_seconds": 0.0},
                    {"id": "eingang-nfc", "type": "pn532", "door": "eingang", "port": site_nfc.path}],
    }
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), layouts={"minheim": layout})
    cfg = str(county.hub_config_path)
    site = county.sites["minheim"]
    watch = TestClient(broker.host, broker.port)
    watch.subscribe(topic("minheim", Kind.STATUS))
    watch.subscribe(topic("minheim", Kind.EVENT))
    events: list[dict[str, Any]] = []

    def granted(who_count: int) -> bool:
        events.extend(json.loads(x.payload) for x in watch.drain() if x.topic.endswith("/event"))
        return sum(e["type"] == "access.granted" for e in events) >= who_count

    site.start()
    try:
        with FakeRdm6300() as desk_rdm, FakePn532() as desk_pn:
            desk_rdm.present(EM_CARD)
            code, out, _ = run(capsys, "cards", "enroll", "m-17", "--name", "Anna", "--reader",
                               f"rdm6300:{desk_rdm.path}", "--yes", "--config", cfg)
            assert code == 0, out
            assert f"read: EM4100 card, printed number {EM_PRINTED} (or 177,49875)" in out
            assert "enrolled em4100 card" in out and EM_CARD not in out
            desk_pn.present(UID)
            code, out, _ = run(capsys, "cards", "enroll", "m-18", "--reader", f"pn532:{desk_pn.path}", "--yes",
                               "--timeout", "10", "--config", cfg)
            assert code == 0 and "read: ISO 14443A card, UID 04A1B2C3D4E5F6" in out
        for member in ("m-17", "m-18"):
            code, out, _ = run(capsys, "grants", "add", member, "minheim", "--doors", "eingang", "--config", cfg)
            assert code == 0 and "new cache version" in out
        wait_for(lambda: any(b'"online"' in x.payload for x in watch.drain()), 20, what="site online")
        code, out, err = run(capsys, "push", "minheim", "--config", cfg, "--timeout", "20")
        assert code == 0 and "now holds version" in out, err
        site_rfid.write(rdm6300_frame(EM_CARD))
        wait_for(lambda: granted(1), 15, what="the desk-enrolled EM4100 card to open the door")
        site_nfc.present(UID)
        wait_for(lambda: granted(2), 15, what="the desk-enrolled ISO 14443A card to open the door")
        assert {(e["door"], e["reason"]) for e in events if e["type"] == "access.granted"} == {("eingang", "standing")}
    finally:
        site.stop()
        watch.close()
        site_rfid.close()
        site_nfc.unplug()
