"""Read one card from a reader plugged into the admin's computer, with the site's own
reader drivers (the shared ``readers`` package): an RDM6300 or a PN532 on a USB serial
adapter (the types ``readers.registry`` configures by a device path alone).

``read_one("rdm6300:/dev/ttyUSB0", timeout)`` returns the first credential string read,
or raises DeskReaderError with a message an admin can act on, chosen by the type of the
reader's error (``readers.errors``): no such device, not a serial port, no permission,
in use by another program, a device that does not answer like that reader (the PN532's
firmware probe fails), or no card within the time. The credential is returned to the
caller only; nothing here logs it.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

from readers import ReaderError, make_reader
from readers.base import Backoff
from readers.config import SerialConfig
from readers.errors import DeviceAccessDenied, DeviceBusy, DeviceNotFound, ProtocolError, WrongDevice
from readers.registry import config_type, device_types
from readers.serialbase import check_serial_device

from ..errors import HubError


class DeskReaderError(HubError):
    """The desk reader could not deliver a card (the message says why and what to do)."""


class _Capture:
    """The sink: the first credential or device error, handed to the waiting thread."""

    def __init__(self) -> None:
        self.q: queue.Queue[str | ReaderError] = queue.Queue()

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.q.put(credential)

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        self.q.put(error)


def parse_spec(spec: str) -> tuple[str, str]:
    """``TYPE:DEVICE`` → (type, device); DeskReaderError when malformed."""
    kind, sep, device = spec.partition(":")
    types = device_types()
    if not sep or kind not in types or not device:
        examples = " or ".join(f"{t}:/dev/ttyUSB{i}" for i, t in enumerate(types[:2]))
        raise DeskReaderError(f"--reader is TYPE:DEVICE with TYPE one of {', '.join(types)} (e.g. {examples})")
    return kind, device


def explain(kind: str, device: str, error: ReaderError) -> str:
    """What the admin is told about ``error`` of the ``kind`` reader on ``device``: by its type."""
    if isinstance(error, DeviceNotFound):
        return (f"no reader at {device}: the device does not exist (is the reader plugged in? "
                "`ls /dev/ttyUSB* /dev/ttyACM*` shows the serial adapters)")
    if isinstance(error, WrongDevice):
        return f"{device} is not a serial port"
    if isinstance(error, DeviceAccessDenied):
        return (f"cannot open {device}: permission denied (add your user to the group that owns it, usually "
                "dialout, and log in again)")
    if isinstance(error, DeviceBusy):
        return f"{device} is in use by another program (is torwart-edge or a terminal program running on it?)"
    if isinstance(error, ProtocolError):
        return f"the device on {device} does not answer like a {kind.upper()}" + (
            f": {error.advice}" if error.advice else f" ({error})")
    return f"the reader on {device} failed: {error}"


def read_one(spec: str, timeout: float, *, on_ready: Callable[[], None] | None = None,
             holdoff: float = 1.0) -> str:
    """Start the reader, wait for one card and stop it again; return the credential string.

    ``on_ready`` is called once the reader is working (for a PN532: its firmware answered),
    which is when the admin should hold the card to it."""
    kind, device = parse_spec(spec)
    sink = _Capture()
    try:
        check_serial_device(device)  # fail early, without a reader thread
        cfg = config_type(kind).for_device("desk", device, holdoff_seconds=holdoff)
        reader = make_reader(cfg, sink, backoff=Backoff(start=0.2, maximum=1.0))
    except ReaderError as exc:
        raise DeskReaderError(explain(kind, device, exc)) from None
    # The reader's own warnings ("reopening with backoff") would repeat what the admin is
    # told below in plainer words; they still show with --log-level debug.
    readers_log = logging.getLogger("readers")
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
                item = sink.q.get(timeout=min(left, 0.1 if not ready else left))
            except queue.Empty:
                continue
            if isinstance(item, ReaderError):
                raise DeskReaderError(explain(kind, device, item))
            return item
        if not ready:
            raise DeskReaderError(f"the reader on {device} did not start working within {timeout:g} s")
        dropped = reader.stats.dropped
        baud = cfg.baudrate if isinstance(cfg, SerialConfig) else None
        hint = (f"; {dropped} garbled frames arrived: is it a {kind.upper()} at {baud} baud?" if dropped else "")
        raise DeskReaderError(f"no card read within {timeout:g} s{hint}")
    finally:
        reader.stop()
        readers_log.setLevel(old_level)
