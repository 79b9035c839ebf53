"""The OSDP backend against libosdp's own PeripheralDevice (testkit.osdp_pd) over a pty,
with Secure Channel on: the reader contract for OSDP, plus what only a supervised reader
does (online/offline, tamper, refusing a wrong key, several readers on one bus).
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from readers import Backoff, ReaderError, make_reader
from readers.osdp import OFFLINE_AFTER, OsdpConfig, OsdpReader, card_credential
from testkit.osdp_pd import PdBus, left_aligned, wiegand_frame
from testkit.util import next_matching, wait_for
from wire.creds import check_credential
from wire.keys import write_scbk_file

FAST = Backoff(start=0.02, factor=2.0, maximum=0.2)
#: libosdp polls each reader about every 0.1 s; "a few poll periods" plus its 0.2 s reply timeout.
OFFLINE_WITHIN = OFFLINE_AFTER + 0.5


class Sink:
    """A real sink, with the supervised-reader state callback."""

    def __init__(self) -> None:
        self.reads: queue.Queue[tuple[str, str]] = queue.Queue()
        self.errors: queue.Queue[tuple[str, str]] = queue.Queue()
        self.states: queue.Queue[tuple[str, str, float]] = queue.Queue()

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.reads.put((reader_id, credential))

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        self.errors.put((reader_id, str(error)))

    def on_reader_state(self, reader_id: str, state: str) -> None:
        self.states.put((reader_id, state, time.monotonic()))

    def next_state(self, reader_id: str, timeout: float = 5.0) -> tuple[str, float]:
        _, state, t = next_matching(self.states, lambda item: item[0] == reader_id, timeout, f"state of {reader_id}")
        return state, t


def _key(tmp_path: Path, name: str, key: bytes | None = None) -> tuple[bytes, str]:
    key = key if key is not None else os.urandom(16)
    return key, str(write_scbk_file(tmp_path / f"{name}.scbk", key))


def _cfg(rid: str, port: str, address: int, scbk_file: str) -> OsdpConfig:
    return OsdpConfig(id=rid, port=port, baudrate=115200, address=address, scbk_file=scbk_file,
                      holdoff_seconds=5.0)


@pytest.fixture
def bus() -> Iterator[PdBus]:
    b = PdBus()
    yield b
    b.close()


def _reader(bus: PdBus, tmp_path: Path, sink: Sink, rid: str = "front-in", address: int = 1,
            pd_key: bytes | None = None) -> OsdpReader:
    key, path = _key(tmp_path, rid)
    bus.add(address, key if pd_key is None else pd_key)
    reader = make_reader(_cfg(rid, bus.port, address, path), sink, backoff=FAST)
    assert isinstance(reader, OsdpReader)
    reader.start()
    return reader


def test_osdp_card_reads_over_secure_channel_give_the_wiegand_strings(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    try:
        assert sink.next_state("front-in") == ("online", pytest.approx(time.monotonic(), abs=10))
        pd = bus.pds[0]
        assert pd.secure
        pd.card(26, wiegand_frame(26, 0x3A1F2C))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand26:3A1F2C")
        pd.card(34, wiegand_frame(34, 0x12345678))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand34:12345678")
        bits37 = [1, 0, 1, 0] * 9 + [1]
        pd.card(37, left_aligned(bits37))
        _, cred = sink.reads.get(timeout=5)
        assert cred == "bits37:" + left_aligned(bits37).hex().upper()
        assert check_credential(cred) == cred
        assert reader.stats.reads == 3
    finally:
        reader.stop()


def test_osdp_card_with_bad_parity_is_dropped_and_counted_like_wiegand(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    try:
        sink.next_state("front-in")
        frame = bytearray(wiegand_frame(26, 0x3A1F2C))
        frame[0] ^= 0x40  # flips a data bit in the first half: even parity fails
        bus.pds[0].card(26, bytes(frame))
        wait_for(lambda: reader.stats.dropped == 1, timeout=5, what="the drop")
        bus.pds[0].card(26, wiegand_frame(26, 0x000001))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand26:000001")
    finally:
        reader.stop()


def test_card_credential_matches_protocol_examples() -> None:
    assert card_credential(26, wiegand_frame(26, 0x3A1F2C)) == "wiegand26:3A1F2C"
    assert card_credential(37, bytes.fromhex("0A1B2C3D48")) == "bits37:0A1B2C3D48"
    assert card_credential(37, bytes.fromhex("0A1B2C3D4F")) == "bits37:0A1B2C3D48"  # bits past 37 cleared
    assert card_credential(37, b"\x01") is None  # too few bytes for 37 bits


def test_osdp_keypad_keys_give_a_pin_through_the_wiegand_pin_entry(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    try:
        sink.next_state("front-in")
        bus.pds[0].keys(b"12")
        bus.pds[0].keys(b"34\r")  # OSDP's '#' is CR
        assert sink.reads.get(timeout=5) == ("front-in", "pin:1234")
        bus.pds[0].keys(b"99\x7f4821#")  # '*' (DEL) clears the entry
        assert sink.reads.get(timeout=5) == ("front-in", "pin:4821")
    finally:
        reader.stop()


def test_grant_and_deny_feedback_reach_the_device_as_led_and_buzzer(bus: PdBus, tmp_path: Path) -> None:
    from osdp import Command, CommandLEDColor

    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    try:
        sink.next_state("front-in")
        pd = bus.pds[0]
        reader.feedback(True)
        wait_for(lambda: len(pd.commands) >= 2, timeout=5, what="grant commands")
        led, buzz = pd.commands[:2]
        assert led["command"] == Command.LED and led["on_color"] == CommandLEDColor.Green
        assert buzz["command"] == Command.Buzzer
        short = buzz["on_count"]
        reader.feedback(False)
        wait_for(lambda: len(pd.commands) >= 4, timeout=5, what="deny commands")
        led, buzz = pd.commands[2:4]
        assert led["command"] == Command.LED and led["on_color"] == CommandLEDColor.Red
        assert buzz["command"] == Command.Buzzer and buzz["on_count"] > short
    finally:
        reader.stop()


def test_a_silent_reader_goes_offline_within_a_few_polls_and_comes_back_reading(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    try:
        assert sink.next_state("front-in")[0] == "online"
        pd = bus.pds[0]
        pd.stop()
        stopped = time.monotonic()
        state, t = sink.next_state("front-in")
        assert state == "offline"
        assert t - stopped < OFFLINE_WITHIN
        pd.start()
        assert sink.next_state("front-in", timeout=10)[0] == "online"
        pd.card(26, wiegand_frame(26, 0x0BCDEF))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand26:0BCDEF")
    finally:
        reader.stop()


def test_a_reader_with_a_wrong_key_is_refused_reported_and_never_read(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink, pd_key=os.urandom(16))
    try:
        rid, error = sink.errors.get(timeout=10)
        assert rid == "front-in" and "Secure Channel" in error
        assert not reader.online
        assert sink.next_state("front-in")[0] == "offline"
        pd = bus.pds[0]
        assert not pd.secure
        with pytest.raises(queue.Empty):
            pd.card(26, wiegand_frame(26, 0x3A1F2C))
            pd.keys(b"1234#")
            sink.reads.get(timeout=1.5)
        assert sink.errors.empty()  # reported once per episode
    finally:
        reader.stop()


def test_two_readers_at_different_addresses_share_one_bus(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    a = _reader(bus, tmp_path, sink, rid="front-in", address=1)
    b = _reader(bus, tmp_path, sink, rid="front-out", address=2)
    try:
        wait_for(lambda: a.online and b.online, timeout=10, what="both online")
        assert a._bus is b._bus
        # The second reader joining rebuilt the control panel: the first did not flap offline.
        states = []
        while not sink.states.empty():
            states.append(sink.states.get()[:2])
        assert ("front-in", "offline") not in states and ("front-in", "online") in states
        bus.pds[1].card(26, wiegand_frame(26, 0x222222))
        assert sink.reads.get(timeout=5) == ("front-out", "wiegand26:222222")
        bus.pds[0].card(26, wiegand_frame(26, 0x111111))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand26:111111")
        bus.pds[1].stop()  # one reader off the bus: the other one keeps reading
        wait_for(lambda: not b.online, timeout=OFFLINE_WITHIN + 1, what="front-out offline")
        bus.pds[0].card(26, wiegand_frame(26, 0x333333))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand26:333333")
        assert a.online
    finally:
        b.stop()
        a.stop()


def test_tamper_is_reported_once(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    try:
        sink.next_state("front-in")
        bus.pds[0].tamper()
        assert sink.next_state("front-in")[0] == "tamper"
    finally:
        reader.stop()


def test_an_osdp_reader_without_its_key_file_refuses_to_start(tmp_path: Path) -> None:
    cfg = _cfg("front-in", "/dev/null", 1, str(tmp_path / "missing.scbk"))
    with pytest.raises(ReaderError, match=r"missing\.scbk"):
        make_reader(cfg, Sink()).start()


def test_stop_returns_within_a_second(bus: PdBus, tmp_path: Path) -> None:
    sink = Sink()
    reader = _reader(bus, tmp_path, sink)
    sink.next_state("front-in")
    t = time.monotonic()
    reader.stop()
    assert time.monotonic() - t < 1.0


# --- real hardware (skipped unless TORWART_HW_OSDP names the port) -----------------------

@pytest.mark.hardware
@pytest.mark.skipif(not os.environ.get("TORWART_HW_OSDP"), reason="set TORWART_HW_OSDP to run it")
def test_real_osdp_reader_reads_a_presented_card() -> None:
    """TORWART_HW_OSDP=/dev/ttyUSB0, with TORWART_HW_OSDP_SCBK_FILE (the reader's key file,
    from ``torwart-edge readers keyset``), TORWART_HW_OSDP_ADDRESS (default 0) and
    TORWART_HW_OSDP_BAUD (default 9600); present a card within TORWART_HW_TIMEOUT seconds."""
    cfg = OsdpConfig(id="front-in", port=os.environ["TORWART_HW_OSDP"],
                     baudrate=int(os.environ.get("TORWART_HW_OSDP_BAUD", "9600")),
                     address=int(os.environ.get("TORWART_HW_OSDP_ADDRESS", "0")),
                     scbk_file=os.environ.get("TORWART_HW_OSDP_SCBK_FILE", ""))
    sink = Sink()
    reader = make_reader(cfg, sink)
    reader.start()
    try:
        _, cred = sink.reads.get(timeout=float(os.environ.get("TORWART_HW_TIMEOUT", "30")))
        assert re.fullmatch(r"(?:wiegand26:[0-9A-F]{6}|wiegand34:[0-9A-F]{8}|bits[0-9]+:[0-9A-F]+)", cred)
        assert sink.errors.empty()
    finally:
        reader.stop()
