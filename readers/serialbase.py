"""Machinery every device-backed reader shares: its own thread, failure episodes, backoff.

A ``DeviceReader`` runs one daemon thread that opens the device, runs a *session* on it
until the device fails or the reader is stopped, closes it and, after a failure, opens
it again with exponential backoff (0.2 s doubling to 30 s by default). Each failure
*episode* is reported to ``sink.on_reader_error`` exactly once: from the first failure
until the device is proven healthy again (the subclass calls ``_healthy()``), further
failed opens and sessions are only logged at debug level. The backoff starts afresh
only after the device has worked for ``stable_seconds``, so a device that flaps (a
loose connector) is reported at a falling rate, not several times a second. ``stop()``
returns within about a second: every blocking call in a session waits at most a
fraction of a second, and the backoff waits on an Event.

Counters: ``stats.errors`` = episodes reported, ``stats.reopens`` = successful opens
after the first, ``stats.reads`` = credentials delivered, ``stats.dropped`` = bad input
(per backend); ``failures`` = every failed open or session, reported or not.

``SerialReader`` specialises this for pyserial (``serial_for_url``, so a device path, a
symlink to one, or a pyserial URL all work). ``Holdoff`` turns a stream of repeated
sightings of one card into one read per presentation.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import serial

from wire.creds import redact

from .base import Backoff, ReaderStats, ReadSink
from .config import ReaderConfig, SerialConfig
from .errors import (
    DeviceAccessDenied,
    DeviceFailed,
    DeviceNotFound,
    ReaderConfigError,
    ReaderError,
    WrongDevice,
    classify,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
D = TypeVar("D")

#: Failures a session may raise; anything else is a bug, still contained (see _run).
DEVICE_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, ReaderError)


class Holdoff:
    """One read per presentation.

    ``admit(credential, now)`` is True when the credential counts as a new presentation:
    a different credential than the last one seen, or the same one after a gap of at
    least ``seconds`` since it was last seen. Repeats with shorter gaps are suppressed
    (and each repeat extends the presentation). ``clear()`` ends the current
    presentation early (a PN532 poll that found no card). ``seconds = 0`` disables it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: str | None = None
        self._seen = 0.0

    def admit(self, credential: str, now: float) -> bool:
        repeat = credential == self._last and now - self._seen < self.seconds
        self._last, self._seen = credential, now
        return not repeat

    def clear(self) -> None:
        self._last = None


class DeviceReader(Generic[D]):
    """Base of the thread-per-device readers. Subclasses implement ``_open``, ``_session``
    and ``_close``; ``_session`` returns when ``self._stop`` is set (or to have the device
    reopened) and raises one of DEVICE_ERRORS when the device fails."""

    #: Short prefix for thread names ("rdm6300", "pn532", "sim").
    kind = "device"
    #: A device that worked this long before failing gets the backoff from its start again.
    stable_seconds = 5.0

    def __init__(self, cfg: ReaderConfig, sink: ReadSink, *, backoff: Backoff | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.id = cfg.id
        self.cfg = cfg
        self.sink = sink
        self.stats = ReaderStats()
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.holdoff = Holdoff(cfg.holdoff_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_episode = False
        self._connected = False
        self._healthy_since: float | None = None
        self._delays = self.backoff.delays()
        self.failures = 0

    # --- the Reader interface -------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread; returns at once. Starting twice is an error."""
        if self._thread is not None:
            raise RuntimeError(f"reader {self.id} already started")
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.kind}-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and release the device; returns within about a second."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
            if t.is_alive():
                log.warning("reader %s: thread did not stop in time", self.id)

    @property
    def failing(self) -> bool:
        """True while a failure episode is open (reported, device not yet healthy again)."""
        return self._in_episode

    @property
    def connected(self) -> bool:
        """True while the device is open and has proven to work."""
        return self._connected

    # --- for subclasses ---------------------------------------------------------------

    def _open(self) -> D:
        raise NotImplementedError

    def _session(self, dev: D) -> None:
        raise NotImplementedError

    def _close(self, dev: D) -> None:
        raise NotImplementedError

    def _healthy(self) -> None:
        """The device works (again): end the failure episode."""
        self._connected = True
        self._healthy_since = time.monotonic()
        if self._in_episode:
            log.info("reader %s: device is working again", self.id)
            self._in_episode = False

    def _deliver(self, credential: str, now: float) -> bool:
        """Hand a validated credential to the sink unless the hold-off suppresses it."""
        if not self.holdoff.admit(credential, now):
            log.debug("reader %s: repeat of %s suppressed", self.id, redact(credential))
            return False
        self._emit(credential)
        return True

    def _emit(self, credential: str) -> None:
        """Hand a validated credential that already passed the hold-off to the sink."""
        self.stats.add("reads")
        log.debug("reader %s: read %s", self.id, redact(credential))
        try:
            self.sink.on_credential(self.id, credential)
        except Exception as exc:  # the sink's bug must not kill the reader thread
            log.error("reader %s: sink refused a read: %s", self.id, type(exc).__name__)

    # --- the thread -------------------------------------------------------------------

    def _fail(self, error: ReaderError) -> None:
        self.failures += 1
        if self._in_episode:
            log.debug("reader %s: still failing: %s", self.id, error)
            return
        self._in_episode = True
        self.stats.add("errors")
        log.warning("reader %s: %s; reopening with backoff", self.id, error)
        try:
            self.sink.on_reader_error(self.id, error)
        except Exception as exc:
            log.error("reader %s: sink refused an error report: %s", self.id, type(exc).__name__)

    def _run(self) -> None:
        opened_before = False
        while not self._stop.is_set():
            dev: D | None = None
            try:
                dev = self._open()
                if opened_before:
                    self.stats.add("reopens")
                opened_before = True
                self._session(dev)
            except DEVICE_ERRORS as exc:
                if not self._stop.is_set():
                    self._fail(classify(exc))
            except Exception as exc:  # a bug: report it like a device failure and keep serving
                log.exception("reader %s: unexpected error", self.id)
                if not self._stop.is_set():
                    self._fail(DeviceFailed(f"internal error: {type(exc).__name__}"))
            finally:
                self._connected = False
                if dev is not None:
                    try:
                        self._close(dev)
                    except Exception as exc:
                        log.debug("reader %s: close failed: %s", self.id, exc)
            if self._stop.is_set():
                break
            since, self._healthy_since = self._healthy_since, None
            if since is not None and time.monotonic() - since >= self.stable_seconds:
                self._delays = self.backoff.delays()
            self._stop.wait(next(self._delays))


class SerialReader(DeviceReader[serial.Serial]):
    """A DeviceReader on a pyserial port: ``cfg.port`` at ``cfg.baudrate`` 8N1. Failures to
    open it are typed by errno (``errors.classify``): DeviceNotFound, DeviceAccessDenied,
    DeviceBusy (another process holds its exclusive lock), WrongDevice (not a tty)."""

    #: Every read waits at most this long, so the thread notices stop() quickly.
    read_timeout = 0.05
    write_timeout = 0.25

    def __init__(self, cfg: SerialConfig, sink: ReadSink, *, backoff: Backoff | None = None,
                 clock: Clock = time.monotonic) -> None:
        if not cfg.port:
            raise ReaderConfigError("port", f"reader {cfg.id}: a {cfg.type_name} reader needs a serial port")
        super().__init__(cfg, sink, backoff=backoff, clock=clock)
        self.port = cfg.port
        self.baudrate = cfg.baudrate or cfg.default_baudrate

    def _open(self) -> serial.Serial:
        extra: dict[str, Any] = {} if "://" in self.port else {"exclusive": True}
        ser: serial.Serial = serial.serial_for_url(
            self.port, baudrate=self.baudrate, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE, timeout=self.read_timeout, write_timeout=self.write_timeout, **extra)
        log.debug("reader %s: opened %s at %d baud", self.id, self.port, self.baudrate)
        return ser

    def _close(self, dev: serial.Serial) -> None:
        dev.close()

    def _read_some(self, ser: serial.Serial) -> bytes:
        """What has arrived, waiting at most ``read_timeout`` for the first byte."""
        data: bytes = ser.read(max(1, ser.in_waiting))
        return data


def check_serial_device(device: str) -> None:
    """Fail early, and by type, on a device path that is missing or cannot be a serial port:
    DeviceNotFound, WrongDevice (not a character device) or DeviceAccessDenied (this user
    may not read and write it). A pyserial URL (``rfc2217://…``) is left to pyserial."""
    if "://" in device:
        return
    p = Path(device)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise DeviceNotFound(f"{device} does not exist") from None
    if not stat.S_ISCHR(mode):
        raise WrongDevice(f"{device} is not a character device")
    if not os.access(p, os.R_OK | os.W_OK):
        raise DeviceAccessDenied(f"cannot open {device}: permission denied")
