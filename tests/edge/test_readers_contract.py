"""One set of behaviour cases, run against every reader backend through real parts: the
RDM6300 and the PN532 over real ptys (with fake modules on the far end), Wiegand on
gpiozero MockFactory pins driven bit by bit, the simulated reader over a real FIFO.

Each backend is wrapped in a *rig* that knows how to present a card, keep it in the
field, feed garbage, pull the cable, and wait until the reader has digested everything
the device said so far (``settle``), so that "nothing more was read" is asserted after
a condition, never after a fixed sleep.
"""

from __future__ import annotations

import errno
import os
import queue
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from readers import Backoff, Reader, ReaderError, make_reader
from readers.osdp import OsdpConfig, OsdpReader
from readers.pn532 import Pn532Config, Pn532Reader
from readers.rdm6300 import Rdm6300Config, Rdm6300Reader
from readers.serialbase import DeviceReader
from readers.sim import SimConfig, SimReader
from readers.wiegand import WiegandConfig, WiegandReader
from testkit.osdp_pd import PdBus
from testkit.osdp_pd import wiegand_frame as osdp_wiegand_frame
from testkit.pn532_fake import FakePn532, response_frame, target_response
from testkit.rdm6300_fake import FakeRdm6300, rdm6300_frame
from testkit.util import wait_for
from testkit.wiegand_pins import drive_bits
from wire.creds import check_credential
from wire.keys import write_scbk_file

READER = "front-in"
#: Long enough that no repeat in these tests is ever far enough apart to count again.
HOLDOFF = 5.0
FAST = Backoff(start=0.02, factor=2.0, maximum=0.2)
FORMS = {
    "rdm6300": r"em4100:[0-9A-F]{10}",
    "pn532": r"iso14443a:(?:[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20})",
    "wiegand": r"wiegand(?:26:[0-9A-F]{6}|34:[0-9A-F]{8})",
    "sim": r"[a-z0-9]+:[0-9A-F]+",
    "osdp": r"wiegand(?:26:[0-9A-F]{6}|34:[0-9A-F]{8})|bits[0-9]+:[0-9A-F]+",
}


class Sink:
    """A real ReadSink: collects into queues, as the agent hands over to its one queue."""

    def __init__(self) -> None:
        self.reads: queue.Queue[tuple[str, str]] = queue.Queue()
        self.errors: queue.Queue[tuple[str, str]] = queue.Queue()

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.reads.put((reader_id, credential))

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        self.errors.put((reader_id, str(error)))

    def next_read(self, timeout: float = 5.0) -> str:
        reader_id, cred = self.reads.get(timeout=timeout)
        assert reader_id == READER
        return cred


class Rig:
    """What each backend's rig can do; serial rigs also unplug and replug."""

    name = ""
    serial = False
    reader: Reader
    sink: Sink

    def present(self, card: int) -> str:
        """Put card 0 or 1 into the field; return the credential string it must give."""
        raise NotImplementedError

    def hold(self, repeats: int) -> None:
        """Keep the present card in the field until the device has repeated it ``repeats`` times."""
        raise NotImplementedError

    def remove(self) -> None:
        """Take the card out of the field."""

    def garbage(self) -> None:
        """Feed the reader bad input of its kind."""
        raise NotImplementedError

    def settle(self) -> None:
        """Return once the reader has processed everything the device has sent so far."""
        raise NotImplementedError

    def unplug(self) -> None:
        raise NotImplementedError

    def replug(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def wait_ready(self) -> None:
        """Return once the reader has its device open (what the device sent before is lost)."""
        if isinstance(self.reader, DeviceReader):
            reader = self.reader
            wait_for(lambda: reader.connected, timeout=5, what="the reader to open its device")


def _repoint(link: Path, target: str) -> None:
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


class Rdm6300Rig(Rig):
    name, serial = "rdm6300", True
    CARDS = ("0A00B1C2D3", "1F2E3D4C5B")

    def __init__(self, tmp_path: Path) -> None:
        self.sink = Sink()
        self.fake = FakeRdm6300(interval=0.01)
        self.link = tmp_path / "ttyRDM"
        _repoint(self.link, self.fake.path)
        cfg = Rdm6300Config(id=READER, port=str(self.link), baudrate=9600,
                            holdoff_seconds=HOLDOFF)
        self.reader = make_reader(cfg, self.sink, backoff=FAST)
        assert isinstance(self.reader, Rdm6300Reader)
        self.rdm = self.reader
        self.base = 0  # valid frames the reader had seen before the current fake was plugged in

    def present(self, card: int) -> str:
        self.fake.present(self.CARDS[card])
        return "em4100:" + self.CARDS[card]

    def hold(self, repeats: int) -> None:
        n = self.fake.frames_sent
        wait_for(lambda: self.fake.frames_sent >= n + repeats, timeout=5, what="repeated frames")

    def remove(self) -> None:
        self.fake.remove()

    def garbage(self) -> None:
        frame = bytearray(rdm6300_frame(self.CARDS[0]))
        frame[5] = ord("7") if frame[5] != ord("7") else ord("8")  # a data digit: checksum now wrong
        self.fake.write(bytes(frame))

    def settle(self) -> None:
        wait_for(lambda: self.rdm.parser.frames - self.base >= self.fake.frames_sent, timeout=5, what="frames read")

    def unplug(self) -> None:
        self.fake.unplug()

    def replug(self) -> None:
        self.base = self.rdm.parser.frames
        self.fake = FakeRdm6300(interval=0.01)
        _repoint(self.link, self.fake.path)

    def close(self) -> None:
        self.fake.unplug()


class Pn532Rig(Rig):
    name, serial = "pn532", True
    UIDS = (bytes.fromhex("04A1B2C3D4E5F6"), bytes.fromhex("DEADBEEF"))

    def __init__(self, tmp_path: Path) -> None:
        self.sink = Sink()
        self.fake = FakePn532()
        self.link = tmp_path / "ttyPN532"
        _repoint(self.link, self.fake.path)
        cfg = Pn532Config(id=READER, port=str(self.link), baudrate=115200,
                            holdoff_seconds=HOLDOFF)
        self.reader = make_reader(cfg, self.sink, backoff=FAST)
        assert isinstance(self.reader, Pn532Reader)

    def present(self, card: int) -> str:
        self.fake.present(self.UIDS[card])
        return "iso14443a:" + self.UIDS[card].hex().upper()

    def hold(self, repeats: int) -> None:
        n = self.fake.polls
        wait_for(lambda: self.fake.polls >= n + repeats, timeout=10, what="polls")

    def remove(self) -> None:
        self.fake.remove()

    def garbage(self) -> None:
        frame = bytearray(response_frame(target_response(self.UIDS[0])))
        frame[-2] ^= 0x01  # DCS
        self.fake.inject(bytes(frame))

    def settle(self) -> None:
        self.hold(2)  # poll n+2 is only sent after the answer to poll n+1 was handled

    def unplug(self) -> None:
        self.fake.unplug()

    def replug(self) -> None:
        self.fake = FakePn532()
        _repoint(self.link, self.fake.path)

    def close(self) -> None:
        self.fake.unplug()


def _wiegand_bits(nbits: int, data: int) -> list[int]:
    """Independent encoder: even parity over the first half, data, odd over the second half."""
    n = nbits - 2
    bits = [(data >> (n - 1 - i)) & 1 for i in range(n)]
    return [sum(bits[: n // 2]) % 2, *bits, 1 - sum(bits[n // 2:]) % 2]


class WiegandRig(Rig):
    name = "wiegand"
    CARDS = ((26, 0x3A1F2C), (34, 0x12345678))

    def __init__(self, factory: Any) -> None:
        self.sink = Sink()
        self.factory = factory
        cfg = WiegandConfig(id=READER, d0_pin=20, d1_pin=21, holdoff_seconds=HOLDOFF)
        self.reader = make_reader(cfg, self.sink)
        assert isinstance(self.reader, WiegandReader)
        self.wg = self.reader
        self.current: list[int] | None = None

    def burst(self, bits: list[int]) -> None:
        drive_bits(self.factory, self.wg, bits)

    def present(self, card: int) -> str:
        nbits, data = self.CARDS[card]
        self.current = _wiegand_bits(nbits, data)
        self.burst(self.current)
        return f"wiegand{nbits}:{data:0{(nbits - 2) // 4}X}"

    def hold(self, repeats: int) -> None:
        assert self.current is not None
        for _ in range(repeats):
            self.burst(self.current)

    def remove(self) -> None:
        self.current = None

    def garbage(self) -> None:
        bits = _wiegand_bits(*self.CARDS[0])
        bits[7] ^= 1  # breaks the even parity over the first half
        self.burst(bits)

    def settle(self) -> None:
        wait_for(lambda: not self.wg.pending, timeout=5, what="burst to end")


class SimRig(Rig):
    name = "sim"
    CREDS = ("em4100:0A00B1C2D3", "pin:4821")

    def __init__(self, tmp_path: Path) -> None:
        self.sink = Sink()
        self.path = tmp_path / "sim" / "sim-front"
        cfg = SimConfig(id=READER, path=str(self.path), holdoff_seconds=HOLDOFF)
        self.reader = make_reader(cfg, self.sink, backoff=FAST)
        assert isinstance(self.reader, SimReader)
        self.sim = self.reader
        self.written = 0

    def write(self, line: str, newline: bool = True) -> None:
        """One writer per line, as `echo … > fifo` does."""

        def open_writer() -> list[int]:
            try:
                return [os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)]
            except OSError as exc:  # not created yet, or no reader has it open yet
                if exc.errno in (errno.ENOENT, errno.ENXIO):
                    return []
                raise

        [fd] = wait_for(open_writer, timeout=5, what="the FIFO to have a reader")
        try:
            os.write(fd, line.encode() + (b"\n" if newline else b""))
        finally:
            os.close(fd)
        self.written += 1

    def present(self, card: int) -> str:
        self.write(self.CREDS[card])
        return self.CREDS[card]

    def hold(self, repeats: int) -> None:
        """A simulated card has no field to stay in: each line written is a new presentation."""

    def garbage(self) -> None:
        self.write("em4100:NOT-A-CARD")

    def settle(self) -> None:
        wait_for(lambda: self.sim.lines >= self.written, timeout=5, what="lines read")


class OsdpRig(Rig):
    """libosdp's own PeripheralDevice on a pty (testkit.osdp_pd), Secure Channel on. A held
    card is the device reporting it again; unplugging is supervision (test_readers_osdp.py)."""

    name = "osdp"
    CARDS = ((26, 0x3A1F2C), (34, 0x12345678))

    def __init__(self, tmp_path: Path) -> None:
        self.sink = Sink()
        self.bus = PdBus()
        key = os.urandom(16)
        self.pd = self.bus.add(1, key)
        cfg = OsdpConfig(id=READER, port=self.bus.port, baudrate=115200, address=1,
                            scbk_file=str(write_scbk_file(tmp_path / "osdp.scbk", key)), holdoff_seconds=HOLDOFF)
        self.reader = make_reader(cfg, self.sink)
        assert isinstance(self.reader, OsdpReader)
        self.osdp = self.reader
        self.submitted = 0
        self.current: tuple[int, int] | None = None

    def _card(self, nbits: int, data: bytes) -> None:
        self.pd.card(nbits, data)
        self.submitted += 1

    def present(self, card: int) -> str:
        nbits, data = self.current = self.CARDS[card]
        self._card(nbits, osdp_wiegand_frame(nbits, data))
        return f"wiegand{nbits}:{data:0{(nbits - 2) // 4}X}"

    def hold(self, repeats: int) -> None:
        assert self.current is not None
        for _ in range(repeats):
            self._card(self.current[0], osdp_wiegand_frame(*self.current))

    def remove(self) -> None:
        self.current = None

    def garbage(self) -> None:
        frame = bytearray(osdp_wiegand_frame(*self.CARDS[0]))
        frame[0] ^= 0x40  # breaks the even parity over the first half
        self._card(26, bytes(frame))

    def settle(self) -> None:
        wait_for(lambda: self.osdp.events >= self.submitted, timeout=5, what="events delivered")

    def wait_ready(self) -> None:
        wait_for(lambda: self.osdp.online, timeout=10, what="Secure Channel up")

    def close(self) -> None:
        self.bus.close()


@pytest.fixture(params=["rdm6300", "pn532", "wiegand", "sim", "osdp"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    r: Rig
    if request.param == "rdm6300":
        r = Rdm6300Rig(tmp_path)
    elif request.param == "pn532":
        r = Pn532Rig(tmp_path)
    elif request.param == "wiegand":
        r = WiegandRig(request.getfixturevalue("mock_pins"))
    elif request.param == "osdp":
        r = OsdpRig(tmp_path)
    else:
        r = SimRig(tmp_path)
    r.reader.start()
    r.wait_ready()
    try:
        yield r
    finally:
        r.reader.stop()
        r.close()


# --- the contract -----------------------------------------------------------------------


def test_a_presented_card_gives_exactly_one_credential_of_its_form(rig: Rig) -> None:
    expected = rig.present(0)
    cred = rig.sink.next_read()
    assert cred == expected
    assert check_credential(cred) == cred
    assert re.fullmatch(FORMS[rig.name], cred)
    rig.remove()
    rig.settle()
    assert rig.sink.reads.empty()
    assert rig.reader.stats.reads == 1
    assert rig.reader.stats.dropped == 0


def test_a_card_held_in_the_field_is_still_one_read(rig: Rig) -> None:
    expected = rig.present(0)
    assert rig.sink.next_read() == expected
    rig.hold(5)
    rig.settle()
    assert rig.sink.reads.empty()
    assert rig.reader.stats.reads == 1


def test_a_second_card_gets_its_own_read(rig: Rig) -> None:
    first = rig.present(0)
    assert rig.sink.next_read() == first
    second = rig.present(1)  # swapped without a gap: a different card is read at once
    assert rig.sink.next_read() == second
    rig.hold(3)
    rig.settle()
    assert rig.sink.reads.empty()
    assert rig.reader.stats.reads == 2


def test_garbage_is_dropped_and_counted_never_read(rig: Rig) -> None:
    rig.garbage()
    wait_for(lambda: rig.reader.stats.dropped >= 1, timeout=5, what="a counted drop")
    rig.settle()
    assert rig.sink.reads.empty()
    assert rig.reader.stats.reads == 0
    expected = rig.present(0)  # and the reader is not thrown off by it
    assert rig.sink.next_read() == expected


def test_an_unplugged_device_is_reported_once_and_the_reader_recovers(rig: Rig) -> None:
    if not rig.serial:
        pytest.skip(f"a {rig.name} reader has no device to unplug")
    assert isinstance(rig.reader, Rdm6300Reader | Pn532Reader)
    reader = rig.reader
    first = rig.present(0)
    assert rig.sink.next_read() == first
    rig.unplug()
    reader_id, error = rig.sink.errors.get(timeout=5)
    assert reader_id == READER and error
    failures = reader.failures
    wait_for(lambda: reader.failures >= failures + 3, timeout=5, what="more failed reopens")
    assert rig.sink.errors.empty()  # still the same episode: reported once
    rig.replug()
    wait_for(lambda: reader.connected and not reader.failing, timeout=5, what="the reader to recover")
    assert reader.stats.reopens >= 1
    second = rig.present(1)
    assert rig.sink.next_read() == second
    assert rig.sink.errors.empty()
    assert reader.stats.errors == 1


def test_stop_returns_within_a_second(rig: Rig) -> None:
    rig.present(0)
    rig.sink.next_read()
    if rig.serial:
        rig.unplug()  # and while it waits to reopen a missing device
        rig.sink.errors.get(timeout=5)
    t0 = time.monotonic()
    rig.reader.stop()
    assert time.monotonic() - t0 < 1.0


# --- backend specifics --------------------------------------------------------------------


def test_wiegand_reads_35_and_37_bit_cards_on_the_pins_and_drops_bad_parity(mock_pins: Any) -> None:
    """A Corporate 1000 (35-bit) and an H10304 (37-bit) card, pulsed on D0/D1, give the
    ``bitsN:`` string an OSDP reader gives (worked by hand: company 0 / card 0 and facility
    1 / card 1, see tests/edge/test_reader_fuzz.py); a flipped parity bit is a counted drop."""
    rig = WiegandRig(mock_pins)
    rig.reader.start()
    try:
        c1k = [0] * 34 + [1]
        h37 = [1, *[0] * 15, 1, *[0] * 18, 1, 0]
        for bits, want in ((c1k, "bits35:0000000020"), (h37, "bits37:8000800010")):
            rig.burst(bits)
            assert rig.sink.next_read() == want
            assert check_credential(want) == want
        for bits, parity_at in ((c1k, 0), (c1k, 1), (c1k, 34), (h37, 0), (h37, 36)):
            bad = list(bits)
            bad[parity_at] ^= 1
            rig.burst(bad)
        rig.settle()
        assert rig.sink.reads.empty()
        assert rig.reader.stats.reads == 2 and rig.reader.stats.dropped == 5
    finally:
        rig.reader.stop()


def test_pn532_garbled_response_is_nacked_and_the_card_still_read_once(tmp_path: Path) -> None:
    rig = Pn532Rig(tmp_path)
    rig.reader.start()
    try:
        rig.hold(1)  # configured and polling
        rig.fake.corrupt(1)
        expected = rig.present(0)
        assert rig.sink.next_read() == expected
        assert rig.fake.nacks_received >= 1
        assert rig.reader.stats.dropped >= 1
        rig.settle()
        assert rig.sink.reads.empty()
    finally:
        rig.reader.stop()
        rig.close()


def test_pn532_card_that_left_the_field_counts_again(tmp_path: Path) -> None:
    rig = Pn532Rig(tmp_path)
    rig.reader.start()
    try:
        expected = rig.present(0)
        assert rig.sink.next_read() == expected
        rig.remove()
        rig.settle()  # at least one poll saw the field empty
        assert rig.present(0) == expected
        assert rig.sink.next_read() == expected
    finally:
        rig.reader.stop()
        rig.close()


def test_pn532_that_stops_answering_is_reported_once_and_recovers(tmp_path: Path) -> None:
    rig = Pn532Rig(tmp_path)
    rig.reader.start()
    assert isinstance(rig.reader, Pn532Reader)
    reader = rig.reader
    try:
        rig.hold(1)
        rig.fake.mute()
        assert rig.sink.errors.get(timeout=10)[0] == READER
        polls = rig.fake.commands[0x02]
        wait_for(lambda: rig.fake.commands[0x02] >= polls + 2, timeout=10, what="probes while muted")
        rig.fake.unmute()
        wait_for(lambda: not reader.failing, timeout=10, what="recovery")
        expected = rig.present(1)
        assert rig.sink.next_read() == expected
        assert rig.sink.errors.empty()
        assert reader.firmware == (0x32, 0x01, 0x06, 0x07)
    finally:
        reader.stop()
        rig.close()


def test_sim_reader_reads_every_line_even_the_same_credential_again(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    rig.reader.start()
    try:
        cred = rig.present(0)
        assert rig.present(0) == cred  # badged twice, e.g. to check out of a toggle room
        assert [rig.sink.next_read(), rig.sink.next_read()] == [cred, cred]
    finally:
        rig.reader.stop()


def test_sim_reader_ends_an_unterminated_line_when_its_writer_closes(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    rig.reader.start()
    try:
        rig.write("pin:4821", newline=False)
        assert rig.sink.next_read() == "pin:4821"
        rig.write("em4100:0A00B1C2D3")  # the next writer starts a fresh line
        assert rig.sink.next_read() == "em4100:0A00B1C2D3"
        assert rig.reader.stats.dropped == 0
    finally:
        rig.reader.stop()


def test_sim_reader_creates_its_fifo_private(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    rig.reader.start()
    try:
        wait_for(rig.path.exists, timeout=5, what="the FIFO")
        mode = rig.path.stat().st_mode
        assert stat.S_ISFIFO(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        rig.reader.stop()


def test_sim_reader_on_a_path_that_is_no_fifo_reports_an_error(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    rig.path.parent.mkdir()
    rig.path.write_text("a plain file\n")
    rig.reader.start()
    try:
        assert "not a FIFO" in rig.sink.errors.get(timeout=5)[1]
    finally:
        rig.reader.stop()


def test_make_reader_refuses_a_serial_reader_without_port() -> None:
    cfg = Rdm6300Config(id=READER)
    with pytest.raises(ReaderError):
        make_reader(cfg, Sink())


# --- real hardware (skipped unless TORWART_HW_* names the device) -----------------------

HW_TIMEOUT = float(os.environ.get("TORWART_HW_TIMEOUT", "30"))


def _hw(kind: str) -> Any:
    var = f"TORWART_HW_{kind.upper()}"
    return pytest.param(kind, marks=pytest.mark.skipif(not os.environ.get(var), reason=f"set {var} to run it"))


@pytest.mark.hardware
@pytest.mark.parametrize("kind", [_hw("rdm6300"), _hw("pn532"), _hw("wiegand")])
def test_real_reader_reads_a_presented_card(kind: str) -> None:
    """Present a card to the real reader within TORWART_HW_TIMEOUT seconds (default 30).
    TORWART_HW_RDM6300=/dev/ttyAMA0, TORWART_HW_PN532=/dev/ttyUSB0,
    TORWART_HW_WIEGAND=D0,D1 (BCM pins; also set GPIOZERO_PIN_FACTORY=lgpio)."""
    where = os.environ[f"TORWART_HW_{kind.upper()}"]
    if kind == "wiegand":
        d0, d1 = (int(p) for p in where.split(","))
        cfg = WiegandConfig(id=READER, d0_pin=d0, d1_pin=d1)
    elif kind == "rdm6300":
        cfg = Rdm6300Config(id=READER, port=where, baudrate=9600)
    else:
        cfg = Pn532Config(id=READER, port=where, baudrate=115200)
    sink = Sink()
    reader = make_reader(cfg, sink)
    reader.start()
    try:
        cred = sink.next_read(timeout=HW_TIMEOUT)
        assert re.fullmatch(FORMS[kind], cred)
        assert sink.errors.empty()
    finally:
        reader.stop()
