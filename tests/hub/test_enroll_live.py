"""Enrollment at a site, end to end over real parts: ``torwart-hub cards enroll --site``
in-process, the running hub on a thread, Mosquitto, and the real edge agent in a
subprocess reading an RDM6300 on a pty. The card read at the site travels sealed, is
enrolled exactly once, reaches the site's cache and opens the door; the raw card id
appears in no log, no MQTT payload and no database of the site (nor in the hub's
events). A sealed read altered in transit is refused and enrolls nothing."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hub.__main__ import main
from hub.enroll import EnrollHandler, ReadOutcome
from hub.enroll import handler as enroll
from hub.enroll import site as enroll_site
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.mqttclient import Message, TestClient
from testkit.rdm6300_fake import rdm6300_frame
from testkit.serialpty import PtyPort
from testkit.util import wait_for
from wire import envelope
from wire import messages as m
from wire.keys import read_key_file
from wire.seal import seal
from wire.topics import Kind, topic

Capsys = pytest.CaptureFixture[str]
CARD_ID = "0A00B1C2D3"
CARD = f"em4100:{CARD_ID}"
PRINTED = "0011649747"


@pytest.fixture
def hub_log(tmp_path: Path) -> Iterator[Path]:
    """Every log record of this process (the hub thread, the CLI) at DEBUG, in a file."""
    path = tmp_path / "hub.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        handler.close()


class Cli(threading.Thread):
    """``torwart-hub ...`` on a thread (it blocks until the card is read)."""

    def __init__(self, *argv: str) -> None:
        super().__init__(name="cli", daemon=True)
        self.argv = list(argv)
        self.code: int | None = None

    def run(self) -> None:
        self.code = main(self.argv)


class Second(EnrollHandler):
    """A handler that lets the other process (the CLI or the running hub) handle the read
    first, so that each test run knows which of the two enrolls the card."""

    def on_read(self, site: str, ev: m.EnrollRead, now: float) -> ReadOutcome | None:
        wait_for(lambda: (row := self.store.get_enrollment(ev.command)) and row.status != "pending", 15,
                 what="the running hub to handle the read")
        return super().on_read(site, ev, now)


@pytest.mark.parametrize("hub_first", [False, True], ids=["cli-enrolls", "hub-enrolls"])
def test_a_card_enrolled_at_the_site_opens_its_door_and_its_id_is_nowhere_in_clear(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: Capsys, hub_log: Path,
    hub_first: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if hub_first:
        monkeypatch.setattr(enroll_site, "EnrollHandler", Second)  # the CLI's
    else:
        monkeypatch.setattr(enroll, "EnrollHandler", Second)  # the running hub's (hub.enroll.for_service)
    reader = PtyPort()
    layout = {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8}],
        "doors": [{"id": "eingang", "lock_pin": 17, "unlock_seconds": 1},
                  {"id": "coworking", "room": "coworking", "lock_pin": 5, "unlock_seconds": 1}],
        "readers": [{"id": "eingang-rfid", "type": "rdm6300", "door": "eingang", "port": reader.path,
                     "holdoff_seconds": 0.0}],
    }
    county = make_county(tmp_path, broker, booking_platform, ("minheim",), layouts={"minheim": layout})
    cfg = str(county.hub_config_path)
    site = county.sites["minheim"]
    wire_tap = TestClient(broker.host, broker.port)
    wire_tap.subscribe("torwart/v1/#")  # every payload on the broker, both directions
    tapped: list[Message] = []
    # A caretaker without a card yet: a standing grant for the entrance.
    assert main(["cards", "add", "ct-1", "pin:90210", "--name", "Hausmeister", "--config", cfg]) == 0
    assert main(["grants", "add", "ct-1", "minheim", "--doors", "eingang", "--config", cfg]) == 0
    capsys.readouterr()

    def events() -> list[dict[str, Any]]:
        tapped.extend(wire_tap.drain())
        return [json.loads(x.payload) for x in tapped if x.topic.endswith("/event")]

    with HubThread(county) as hub:
        store = open_store(hub.service.cfg.hub.store_url)
        site.start(log_level="debug")
        try:
            wait_for(lambda: county.sites["minheim"].cache_version() is not None, 20,
                     what="the first cache at the site")
            cli = Cli("cards", "enroll", "ct-1", "--site", "minheim", "--reader", "eingang-rfid",
                      "--timeout", "30", "--config", cfg)
            cli.start()
            wait_for(lambda: any(e["type"] == "command.executed" and e["action"] == "enroll" for e in events()), 15,
                     what="the site to execute the enroll command")
            reader.write(rdm6300_frame(CARD_ID))  # the caretaker holds the new fob to the reader
            cli.join(30)
            out, err = capsys.readouterr()
            assert cli.code == 0, out + err
            lines = [ln for ln in out.splitlines() if ln]
            steps = ["enrolling a card for member ct-1 (Hausmeister) at site minheim, reader eingang-rfid",
                     "command sent: enroll at reader eingang-rfid of site minheim",
                     "site acknowledged: waiting for a card at eingang-rfid (30 s)",
                     f"card read: EM4100 card, printed number {PRINTED} (or 177,49875)",
                     "enrolled to member ct-1", "cache version", "site minheim holds"]
            assert len(lines) == len(steps) and all(ln.startswith(s) for ln, s in zip(lines, steps, strict=True)), out
            version = int(lines[-1].rsplit(" ", 1)[1])
            assert lines[-2].startswith(f"cache version {version} pushed to site minheim")
            assert lines[-2].endswith("(by the running hub)") == hub_first
            assert store.owner_of_credential(CARD) == "ct-1"
            assert [c.type for c in store.credentials_of("ct-1")] == ["pin", "em4100"]  # enrolled once
            wait_for(lambda: (county.sites["minheim"].cache_version() or 0) >= version, 10,
                     what="the site to hold the new cache")
            no_door = [e for e in events() if e["type"].startswith("access.")]
            assert no_door == []  # the enrollment read opened nothing

            reader.write(rdm6300_frame(CARD_ID))  # and now the fob opens the entrance
            ev = wait_for(lambda: [e for e in events() if e["type"].startswith("access.")], 15,
                          what="the enrolled fob at the door")[0]
            assert (ev["type"], ev["door"], ev["reason"]) == ("access.granted", "eingang", "standing")
            # The running hub saw the same sealed read: its enrollment row is the CLI's, once.
            enrolled = [e for e in events() if e["type"] == "enroll.read"]
            assert len(enrolled) == 1
            row = store.get_enrollment(enrolled[0]["command"])
            assert row is not None and (row.status, row.member_id) == ("enrolled", "ct-1")
            wait_for(lambda: len(store.events(site_id="minheim", type="enroll.read")) == 1, 10,
                     what="the hub to store the enroll.read event")
            hub_events = "\n".join(e.payload for e in store.events(site_id="minheim", limit=10_000))
        finally:
            site.stop()
            store.close()
    tapped.extend(wire_tap.drain())
    wire_tap.close()
    reader.close()

    needles = [CARD, CARD_ID, CARD_ID.lower(), PRINTED]
    raw_id = bytes.fromhex(CARD_ID)
    haystacks: dict[str, bytes] = {
        "agent.log": (site.dir / "agent.log").read_bytes(),
        "hub.log (hub thread + CLI)": hub_log.read_bytes(),
        "mosquitto.log": broker.log_path.read_bytes(),
        "hub events table": hub_events.encode(),
        "MQTT payloads": b"\n".join(x.payload for x in tapped),
    }
    for f in sorted(site.data_dir.iterdir()):  # cache.db, outbox.db, state.db and their -wal/-shm
        if f.is_file():
            haystacks[f"site {f.name}"] = f.read_bytes()
    assert len(tapped) > 10 and any(k.startswith("site outbox.db") for k in haystacks)
    assert b"enroll.read" in haystacks["MQTT payloads"] and b"enroll.read" in haystacks["hub events table"]
    for where, data in haystacks.items():
        for needle in needles:
            assert needle.encode() not in data, f"{needle} found in {where}"
        assert raw_id not in data, f"the raw card id bytes found in {where}"


# --- a sealed read altered in transit -----------------------------------------------------------------


class FakeSite:
    """Answers enroll commands like a site would, but alters the sealed read on its way."""

    def __init__(self, broker: Mosquitto, county: County) -> None:
        self.client = TestClient(broker.host, broker.port)
        self.client.subscribe(topic("minheim", Kind.COMMAND))
        hub_enroll_key = X25519PrivateKey.from_private_bytes(read_key_file(county.dir / "hub" / "enroll.key"))
        self.enroll_pub = hub_enroll_key.public_key()  # what a site has in [hub] enroll_public_key
        self.keys = envelope.trusted_keys(county.hub_key.public_key())
        self.seq = 0

    def read_event(self, command_id: str, sealed: str) -> bytes:
        self.seq += 1
        ev = m.EnrollRead(id=uuid.uuid4().hex, site="minheim", seq=self.seq, boot="fake", ts=0.0,
                          clock_synced=True, reader="eingang-rfid", command=command_id, sealed=sealed)
        return m.encode(ev)

    def answer_with_an_altered_read(self, timeout: float = 15.0) -> str:
        msg = self.client.expect(topic("minheim", Kind.COMMAND), timeout)
        cmd = envelope.open_body(msg.payload, self.keys, "minheim")
        assert isinstance(cmd, m.Command) and cmd.action == "enroll"
        ack = m.CommandAck(id=cmd.id, ok=True, error=None, ts=0.0)
        self.client.publish(topic("minheim", Kind.COMMAND_ACK), m.encode(ack))
        raw = bytearray(base64.b64decode(seal(CARD, self.enroll_pub, "minheim")))
        raw[40] ^= 0x01  # one bit of the ciphertext flipped on the way
        self.client.publish(topic("minheim", Kind.EVENT), self.read_event(cmd.id, base64.b64encode(raw).decode()))
        return cmd.id

    def close(self) -> None:
        self.client.close()


def test_a_sealed_read_altered_in_transit_is_refused_by_the_cli_and_by_the_running_hub(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: Capsys, hub_log: Path
) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim",))
    cfg = str(county.hub_config_path)
    fake = FakeSite(broker, county)
    try:
        # The CLI alone (no hub running): it opens the seal itself.
        cli = Cli("cards", "enroll", "m-17", "--site", "minheim", "--reader", "eingang-rfid", "--timeout", "20",
                  "--config", cfg)
        cli.start()
        first = fake.answer_with_an_altered_read()
        cli.join(30)
        out, err = capsys.readouterr()
        assert cli.code == 1 and "site acknowledged" in out and "card read" not in out
        assert "enrollment refused: the sealed card read does not open (altered in transit" in err
        assert "nothing enrolled" in err

        # The running hub: it ingests the read and refuses it the same way.
        with HubThread(county) as hub:
            store = open_store(hub.service.cfg.hub.store_url)
            try:
                store.add_enrollment("c-altered", "minheim", "m-17", "eingang-rfid", created_at=0,
                                     expires_at=2**40)
                raw = bytearray(base64.b64decode(seal(CARD, fake.enroll_pub, "minheim")))
                raw[-1] ^= 0x80  # the tag this time
                fake.client.publish(topic("minheim", Kind.EVENT),
                                    fake.read_event("c-altered", base64.b64encode(raw).decode()))
                row = wait_for(lambda: (r := store.get_enrollment("c-altered")) and r.status != "pending" and r,
                               15, what="the hub to handle the altered read")
                assert row.status == "refused" and "altered in transit" in (row.detail or "")
                first_row = store.get_enrollment(first)
                assert first_row is not None and first_row.status == "refused"
                assert store.owner_of_credential(CARD) is None and store.credentials_of("m-17") == []
            finally:
                store.close()
        assert "enrollment c-altered refused" in hub_log.read_text()
    finally:
        fake.close()
