"""Desk enrollment tells the admin what went wrong by the TYPE of the reader's error
(``readers.errors``), never by matching its text: each case is produced for real (a
missing path, a file that is no tty, /dev/null, a port another program holds exclusively,
a tty this user may not open, a device that is no PN532, an adapter pulled mid-read)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from hub.enroll.desk import DeskReaderError, explain, read_one
from readers.errors import (
    DeviceAccessDenied,
    DeviceBusy,
    DeviceFailed,
    DeviceNotFound,
    ProtocolError,
    ReaderConfigError,
    ReaderError,
    WrongDevice,
)
from testkit.rdm6300_fake import FakeRdm6300
from testkit.serialpty import PtyPort

ROOT = Path(__file__).resolve().parents[2]


def told(spec: str, timeout: float = 5.0) -> str:
    with pytest.raises(DeskReaderError) as exc:
        read_one(spec, timeout)
    return str(exc.value)


def test_a_missing_device_is_named_as_not_plugged_in(tmp_path: Path) -> None:
    assert told(f"rdm6300:{tmp_path / 'ttyUSB9'}").startswith(f"no reader at {tmp_path / 'ttyUSB9'}: the device "
                                                              "does not exist (is the reader plugged in?")


def test_a_plain_file_and_dev_null_are_not_serial_ports(tmp_path: Path) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_text("x")
    assert told(f"pn532:{plain}") == f"{plain} is not a serial port"  # the early check: no character device
    assert told("rdm6300:/dev/null") == "/dev/null is not a serial port"  # the reader's open: ENOTTY


def test_a_port_another_program_holds_is_in_use() -> None:
    with PtyPort() as pty:
        holder = serial.Serial(pty.path, exclusive=True)
        try:
            assert told(f"rdm6300:{pty.path}") == (f"{pty.path} is in use by another program (is torwart-edge or a "
                                                   "terminal program running on it?)")
        finally:
            holder.close()


def test_a_tty_this_user_may_not_open_is_permission_denied() -> None:
    """A pty's device node is root's (mode 0620); as root the read runs as nobody (setpriv),
    as any other user the node is made unreadable for that user."""
    with PtyPort() as pty:
        want = f"cannot open {pty.path}: permission denied (add your user to the group that owns it"
        if os.geteuid() != 0:
            os.chmod(pty.path, 0)
            assert told(f"rdm6300:{pty.path}").startswith(want)
            return
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root, and no setpriv to read as another user")
        code = ("import sys\nfrom hub.enroll.desk import DeskReaderError, read_one\n"
                "try:\n    read_one(sys.argv[1], 5)\nexcept DeskReaderError as exc:\n    print(exc)\n")
        run = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              code, f"rdm6300:{pty.path}"], env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
                             cwd="/", capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith(want), run.stdout


def test_a_device_that_is_no_pn532_is_named_with_what_to_check() -> None:
    with FakeRdm6300() as rdm:
        assert told(f"pn532:{rdm.path}", timeout=10) == (
            f"the device on {rdm.path} does not answer like a PN532: is it a PN532 in HSU (UART) mode at "
            "115200 baud, and is it powered?")


def test_an_adapter_pulled_while_waiting_for_the_card_is_a_reader_failure() -> None:
    rdm = FakeRdm6300()
    try:
        with pytest.raises(DeskReaderError) as exc:
            read_one(f"rdm6300:{rdm.path}", 10, on_ready=rdm.unplug)
        assert str(exc.value).startswith(f"the reader on {rdm.path} failed: ")
    finally:
        rdm.unplug()


#: Text the old message-matching would have read as ENOTTY, EACCES and busy all at once.
MISLEADING = "[Errno 25] Inappropriate ioctl; [Errno 13] Permission denied; device busy"


@pytest.mark.parametrize(("error", "says"), [
    (DeviceNotFound(MISLEADING), "no reader at /dev/ttyUSB0: the device does not exist"),
    (WrongDevice(MISLEADING), "/dev/ttyUSB0 is not a serial port"),
    (DeviceAccessDenied(MISLEADING), "cannot open /dev/ttyUSB0: permission denied"),
    (DeviceBusy(MISLEADING), "/dev/ttyUSB0 is in use by another program"),
    (ProtocolError(MISLEADING, advice="is it powered?"), "does not answer like a PN532: is it powered?"),
    (ProtocolError(MISLEADING), f"does not answer like a PN532 ({MISLEADING})"),
    (DeviceFailed(MISLEADING), f"the reader on /dev/ttyUSB0 failed: {MISLEADING}"),
    (ReaderConfigError("port", MISLEADING), f"the reader on /dev/ttyUSB0 failed: {MISLEADING}"),
])
def test_each_error_type_has_its_own_message_whatever_its_text(error: ReaderError, says: str) -> None:
    assert says in explain("pn532", "/dev/ttyUSB0", error)
