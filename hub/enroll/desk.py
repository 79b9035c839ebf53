"""Read one card from a reader plugged into the admin's computer, with the site's own
reader drivers (``edge.readers``): an RDM6300 or a PN532 on a USB serial adapter.

``read_one("rdm6300:/dev/ttyUSB0", timeout)`` returns the first credential string read,
or raises DeskReaderError with a message an admin can act on: no such device, not a
serial port, no permission, a device that does not answer like that reader (the PN532's
firmware probe fails), or no card within the time. The credential is returned to the
caller only; nothing here logs it.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import time
from collections.abc import Callable
from pathlib import Path

from edge.config import DEFAULT_BAUD, ReaderSection
from edge.errors import ReaderError
from edge.readers import Backoff, make_reader

from ..errors import HubError

TYPES = ("rdm6300", "pn532")


class DeskReaderError(HubError):
    """The desk reader could not deliver a card (the message says why and what to do)."""


class _Capture:
    """The sink: the first credential or device error, handed to the waiting thread."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[str, str]] = queue.Queue()

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.q.put(("card", credential))

    def on_reader_error(self, reader_id: str, error: str) -> None:
        self.q.put(("error", error))


def parse_spec(spec: str) -> tuple[str, str]:
    """``TYPE:DEVICE`` → (type, device); DeskReaderError when malformed."""
    kind, sep, device = spec.partition(":")
    if not sep or kind not in TYPES or not device:
        raise DeskReaderError(f"--reader is TYPE:DEVICE with TYPE one of {', '.join(TYPES)} "
                              "(e.g. rdm6300:/dev/ttyUSB0 or pn532:/dev/ttyUSB1)")
    return kind, device


def check_device(device: str) -> None:
    """Fail early, and clearly, on a device that is missing or cannot be a serial port."""
    if "://" in device:  # a pyserial URL (e.g. rfc2217://host:port): pyserial checks it
        return
    p = Path(device)
    if not p.exists():
        raise DeskReaderError(f"no reader at {device}: the device does not exist (is the reader plugged in? "
                              "`ls /dev/ttyUSB* /dev/ttyACM*` shows the serial adapters)")
    if not stat.S_ISCHR(p.stat().st_mode):
        raise DeskReaderError(f"{device} is not a serial port (not a character device)")
    if not os.access(p, os.R_OK | os.W_OK):
        raise DeskReaderError(f"cannot open {device}: permission denied (add your user to the group that "
                              "owns it, usually dialout, and log in again)")


def _explain(kind: str, device: str, error: str) -> str:
    if "Inappropriate ioctl" in error or "Errno 25" in error:
        return f"{device} is not a serial port"
    if "Permission denied" in error or "Errno 13" in error:
        return f"cannot open {device}: permission denied (add your user to the dialout group)"
    if "busy" in error.lower() or "Errno 11" in error or "lock" in error.lower():
        return f"{device} is in use by another program (is torwart-edge or a terminal program running on it?)"
    if kind == "pn532" and "does not answer" in error:
        return (f"the device on {device} does not answer like a PN532 (no firmware version): is it a PN532 "
                "in HSU (UART) mode at 115200 baud, and is it powered?")
    return f"the reader on {device} failed: {error}"


def read_one(spec: str, timeout: float, *, on_ready: Callable[[], None] | None = None,
             holdoff: float = 1.0) -> str:
    """Start the reader, wait for one card and stop it again; return the credential string.

    ``on_ready`` is called once the reader is working (for a PN532: its firmware answered),
    which is when the admin should hold the card to it."""
    kind, device = parse_spec(spec)
    check_device(device)
    cfg = ReaderSection(id="desk", type=kind, door="desk", port=device,  # type: ignore[arg-type]
                        baudrate=DEFAULT_BAUD[kind], holdoff_seconds=holdoff)
    sink = _Capture()
    try:
        reader = make_reader(cfg, sink, backoff=Backoff(start=0.2, maximum=1.0))
    except ReaderError as exc:
        raise DeskReaderError(str(exc)) from None
    # The reader's own warnings ("reopening with backoff") would repeat what the admin is
    # told below in plainer words; they still show with --log-level debug.
    readers_log = logging.getLogger("edge.readers")
    old_level = readers_log.level
    if not readers_log.isEnabledFor(logging.DEBUG):
        readers_log.setLevel(logging.ERROR)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        ready = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not ready and getattr(reader, "connected", True):
                ready = True
                if on_ready is not None:
                    on_ready()
            try:
                what, value = sink.q.get(timeout=min(left, 0.1 if not ready else left))
            except queue.Empty:
                continue
            if what == "card":
                return value
            raise DeskReaderError(_explain(kind, device, value))
        if not ready:
            raise DeskReaderError(f"the reader on {device} did not start working within {timeout:g} s")
        dropped = reader.stats.dropped
        hint = (f"; {dropped} garbled frames arrived: is it a {kind.upper()} at {DEFAULT_BAUD[kind]} baud?"
                if dropped else "")
        raise DeskReaderError(f"no card read within {timeout:g} s{hint}")
    finally:
        reader.stop()
        readers_log.setLevel(old_level)
