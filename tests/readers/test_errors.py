"""Reader failures reach the sink (or the caller) as typed errors, each produced by the real
condition: a missing path, a file that is no tty, a port another process holds, a path
this user may not open, a device that does not speak the reader's protocol, pins in use,
a port that goes away mid-session. A caller tells them apart by class, never by text."""

from __future__ import annotations

import errno
import os
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from readers import Backoff, ReaderError, make_reader
from readers.errors import (
    DeviceAccessDenied,
    DeviceBusy,
    DeviceFailed,
    DeviceNotFound,
    ProtocolError,
    WrongDevice,
    classify,
)
from readers.osdp import OsdpConfig
from readers.pn532 import Pn532Config
from readers.rdm6300 import Rdm6300Config
from readers.serialbase import DeviceReader, check_serial_device
from readers.sim import SimConfig
from readers.wiegand import WiegandConfig
from testkit.osdp_pd import PdBus
from testkit.rdm6300_fake import FakeRdm6300
from testkit.serialpty import PtyPort
from testkit.util import wait_for
from wire.keys import write_scbk_file

FAST = Backoff(start=0.02, factor=2.0, maximum=0.2)


class Sink:
    """Keeps the error objects themselves."""

    def __init__(self) -> None:
        self.reads: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[ReaderError] = queue.Queue()

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.reads.put(credential)

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        self.errors.put(error)


def first_error(cfg: Any, timeout: float = 5.0) -> ReaderError:
    """Start the reader of ``cfg``, return the first error it reports, stop it."""
    sink = Sink()
    reader = make_reader(cfg, sink, backoff=FAST)
    reader.start()
    try:
        return sink.errors.get(timeout=timeout)
    finally:
        reader.stop()


def _no_access_path(tmp_path: Path) -> str:
    """A path whose open for reading and writing fails with EACCES for this process, for
    real: a file without permissions (not for root, who may open it anyway), else a
    read-only sysfs attribute (the kernel refuses writing it even to root)."""
    if os.geteuid() != 0:
        p = tmp_path / "locked"
        p.write_text("")
        p.chmod(0)
        return str(p)
    for candidate in ("/sys/class/tty/tty0/dev", "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size",
                      "/sys/class/mem/null/dev"):
        try:
            fd = os.open(candidate, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.EACCES:
                return candidate
            continue
        os.close(fd)
    pytest.skip("no path here that refuses root an open for writing with EACCES")


def test_a_missing_device_is_device_not_found(tmp_path: Path) -> None:
    err = first_error(Rdm6300Config(id="r", port=str(tmp_path / "ttyUSB9")))
    assert isinstance(err, DeviceNotFound)
    assert "ttyUSB9" in str(err)


@pytest.mark.parametrize("where", ["plain file", "/dev/null"])
def test_a_path_that_is_no_tty_is_the_wrong_device(tmp_path: Path, where: str) -> None:
    if where == "plain file":
        (tmp_path / "notes.txt").write_text("x")
        where = str(tmp_path / "notes.txt")
    err = first_error(Pn532Config(id="r", port=where))
    assert isinstance(err, WrongDevice)  # ENOTTY from termios, wrapped by pyserial without an errno


def test_a_port_another_process_holds_exclusively_is_busy_until_it_lets_go() -> None:
    with PtyPort() as pty:
        holder = serial.Serial(pty.path, exclusive=True)
        sink = Sink()
        reader = make_reader(Rdm6300Config(id="r", port=pty.path), sink, backoff=FAST)
        assert isinstance(reader, DeviceReader)
        reader.start()
        try:
            err = sink.errors.get(timeout=5)
            assert isinstance(err, DeviceBusy)
            holder.close()
            wait_for(lambda: reader.connected, timeout=5, what="the reader to open the released port")
        finally:
            reader.stop()
            holder.close()


def test_a_path_this_user_may_not_open_is_access_denied(tmp_path: Path) -> None:
    path = _no_access_path(tmp_path)
    err = first_error(Rdm6300Config(id="r", port=path))
    assert isinstance(err, DeviceAccessDenied)


def test_a_device_that_does_not_answer_like_a_pn532_is_a_protocol_error() -> None:
    with FakeRdm6300() as rdm:
        err = first_error(Pn532Config(id="r", port=rdm.path), timeout=10)
    assert isinstance(err, ProtocolError)
    assert "PN532" in err.advice


def test_a_port_gone_in_the_middle_of_a_session_is_a_device_failure() -> None:
    rdm = FakeRdm6300()
    sink = Sink()
    reader = make_reader(Rdm6300Config(id="r", port=rdm.path), sink, backoff=FAST)
    assert isinstance(reader, DeviceReader)
    reader.start()
    try:
        wait_for(lambda: reader.connected, timeout=5, what="the reader to open the port")
        rdm.unplug()
        assert isinstance(sink.errors.get(timeout=5), DeviceFailed)
    finally:
        reader.stop()
        rdm.unplug()


def test_a_sim_path_that_is_no_fifo_is_the_wrong_device(tmp_path: Path) -> None:
    (tmp_path / "sim-r").write_text("a plain file\n")
    err = first_error(SimConfig(id="r", path=str(tmp_path / "sim-r")))
    assert isinstance(err, WrongDevice) and "not a FIFO" in str(err)


def test_wiegand_pins_another_reader_holds_are_busy(mock_pins: Any) -> None:
    first = make_reader(WiegandConfig(id="a", d0_pin=20, d1_pin=21), Sink())
    second = make_reader(WiegandConfig(id="b", d0_pin=21, d1_pin=22), Sink())
    first.start()
    try:
        with pytest.raises(DeviceBusy, match="cannot claim pins"):
            second.start()
    finally:
        second.stop()
        first.stop()


@pytest.fixture
def bus() -> Iterator[PdBus]:
    b = PdBus()
    yield b
    b.close()


def test_an_osdp_reader_refusing_secure_channel_is_a_protocol_error(bus: PdBus, tmp_path: Path) -> None:
    bus.add(1, os.urandom(16))  # keyed by someone else
    cfg = OsdpConfig(id="o", port=bus.port, baudrate=115200, address=1,
                     scbk_file=str(write_scbk_file(tmp_path / "o.scbk", os.urandom(16))))
    err = first_error(cfg, timeout=10)
    assert isinstance(err, ProtocolError) and "Secure Channel" in str(err)


def test_an_osdp_bus_another_process_holds_is_busy(bus: PdBus, tmp_path: Path) -> None:
    key = os.urandom(16)
    bus.add(1, key)
    holder = serial.Serial(bus.port, exclusive=True)
    try:
        cfg = OsdpConfig(id="o", port=bus.port, baudrate=115200, address=1,
                         scbk_file=str(write_scbk_file(tmp_path / "o.scbk", key)))
        assert isinstance(first_error(cfg), DeviceBusy)
    finally:
        holder.close()


# --- the early check a caller can make before starting a reader (the hub's desk enrollment) --------


def test_check_serial_device_types_each_case(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFound):
        check_serial_device(str(tmp_path / "ttyUSB9"))
    (tmp_path / "plain").write_text("x")
    with pytest.raises(WrongDevice):
        check_serial_device(str(tmp_path / "plain"))
    with PtyPort() as pty:
        check_serial_device(pty.path)  # a tty this user may open: no error
    check_serial_device("rfc2217://localhost:1")  # a URL is pyserial's to check


def test_classify_keeps_an_error_that_is_typed_already_and_reads_a_wrapped_errno() -> None:
    typed = DeviceBusy("held")
    assert classify(typed) is typed
    try:
        serial.Serial("/dev/null")
    except serial.SerialException as exc:
        assert exc.errno is None  # pyserial drops the termios errno: classify finds it on the cause
        err = classify(exc, "custom text")
        assert isinstance(err, WrongDevice) and str(err) == "custom text" and err.__cause__ is exc
    else:
        pytest.fail("/dev/null opened as a serial port")
