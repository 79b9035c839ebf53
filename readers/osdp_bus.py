"""One OSDP bus: a libosdp control panel on one serial port, for every reader on it.

One ``OsdpBus`` per serial ``port`` runs one libosdp control panel for every reader
configured on that port (each at its own ``address``) on one thread, which owns the
libosdp context: it calls ``refresh()`` every ``tick`` seconds, hands reads to the
readers (``osdp.OsdpReader.event``), sends the LED/buzzer commands other threads queued,
and supervises the readers. Other threads only queue (``submit``) or attach/detach
readers; the bus rebuilds its control panel when the set of readers changes.

The port is opened exclusively (``readers keyset`` must not talk on a bus the agent is
serving); a failure to open it, or of the port in a session, is reported to every reader
on the bus once per episode as a typed error (``errors.classify``), and the port is
reopened with backoff.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import osdp_sys
import serial
from osdp import LibFlag, LogLevel, PDInfo

from .base import Backoff, ReaderStats
from .errors import DeviceFailed, ReaderError, classify
from .osdp_link import FrameScanner, SerialChannel


class OsdpReader(Protocol):
    """What the bus needs of a reader on it (``osdp.OsdpReader``)."""

    id: str
    address: int
    scbk: bytes | None
    state: str
    #: When the bus's control panel took this reader on; the bus sets it.
    since: float
    stats: ReaderStats
    clock: Callable[[], float]

    @property
    def offline_after(self) -> float: ...

    def event(self, ev: dict[str, Any], now: float) -> None: ...

    def error(self, error: ReaderError) -> None: ...

    def port_failed(self) -> None: ...

    def supervise(self, up: bool, answered: float | None, now: float) -> bool: ...

log = logging.getLogger(__name__)

TICK = 0.01
OFFLINE_AFTER = 0.5
RETRY_SECONDS = 1.0
#: A reader not up this long after the bus opened (or after it answered) is reported.
CONNECT_SECONDS = 2.0
#: The bus builds its control panel once no reader has attached or detached for this long.
SETTLE = 0.1


_REGISTRY_LOCK = threading.Lock()
_BUSES: dict[str, OsdpBus] = {}


def attach(reader: OsdpReader, port: str, baudrate: int, backoff: Backoff, timing: dict[str, float]) -> OsdpBus:
    """Join (or start) the bus of ``port``."""
    with _REGISTRY_LOCK:
        bus = _BUSES.get(port)
        if bus is None:
            bus = _BUSES[port] = OsdpBus(port, baudrate, backoff=backoff, clock=reader.clock, **timing)
        bus.add(reader)
    return bus


def detach(bus: OsdpBus, reader: OsdpReader) -> None:
    with _REGISTRY_LOCK:
        if bus.remove(reader):
            _BUSES.pop(bus.port, None)
        else:
            return
    bus.join()


class OsdpBus:
    """One control panel on one serial port, for the readers attached to it."""

    def __init__(self, port: str, baudrate: int, *, backoff: Backoff, clock: Callable[[], float] = time.monotonic,
                 tick: float = TICK, retry_seconds: float = RETRY_SECONDS, **_: float) -> None:
        self.port = port
        self.baudrate = baudrate
        self.backoff = backoff
        self.clock = clock
        self.tick = tick
        self.retry_seconds = retry_seconds
        self.scanner = FrameScanner()
        #: The open port's channel (its ``overflow`` / ``received`` counters), once opened.
        self.channel: SerialChannel | None = None
        self.readers: list[OsdpReader] = []
        self._lock = threading.Lock()
        self._dirty = True
        self._changed_at = 0.0
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._commands: deque[tuple[int, tuple[dict[str, Any], ...]]] = deque(maxlen=64)
        self._thread = threading.Thread(target=self._run, name=f"osdp-{port}", daemon=True)

    def add(self, reader: OsdpReader) -> None:
        with self._lock:
            self.readers.append(reader)
            self._dirty = True
            self._changed_at = self.clock()
        if not self._thread.is_alive():  # the first reader starts the bus (never with none)
            self._thread.start()
        self._wake.set()

    def remove(self, reader: OsdpReader) -> bool:
        """Detach ``reader``; True when it was the last one (the bus then stops)."""
        with self._lock:
            if reader in self.readers:
                self.readers.remove(reader)
            self._dirty = True
            self._changed_at = self.clock()
            last = not self.readers
        if last:
            self._stopping.set()
        self._wake.set()
        return last

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def submit(self, address: int, commands: tuple[dict[str, Any], ...]) -> None:
        self._commands.append((address, commands))
        self._wake.set()

    # --- the bus thread -----------------------------------------------------------------------

    def _run(self) -> None:
        delays = self.backoff.delays()
        reported = False
        while not self._stopping.is_set():
            try:
                # exclusive: ``readers keyset`` must not talk on a bus the agent is serving
                ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0, write_timeout=1.0,
                                            exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                if not reported:
                    reported = True
                    failure = classify(exc, f"cannot open {self.port}: {exc}"[:200])
                    for r in self._snapshot():
                        r.error(failure)
                self._stopping.wait(next(delays))
                continue
            try:
                error = self._session(SerialChannel(ser, self.scanner, self.clock))
            except Exception as exc:  # a bug must not end supervision of the other readers silently
                log.exception("osdp bus %s: session failed", self.port)
                error = DeviceFailed(f"{self.port}: {type(exc).__name__}: {exc}"[:200])
            finally:
                ser.close()
            if error is not None:
                if not reported:
                    reported = True
                    for r in self._snapshot():
                        r.error(error)
                self._stopping.wait(next(delays))
            else:
                reported, delays = False, self.backoff.delays()

    def _snapshot(self) -> list[OsdpReader]:
        with self._lock:
            return list(self.readers)

    def _build(self, channel: SerialChannel) -> tuple[Any, list[OsdpReader]]:
        """A fresh control panel for the readers attached now (None while there are none)."""
        with self._lock:
            readers = list(self.readers)
            self._dirty = False
        if not readers:
            return None, readers
        osdp_sys.set_loglevel(LogLevel.Debug if log.isEnabledFor(logging.DEBUG) else LogLevel.Emergency)
        infos = [PDInfo(r.address, channel, scbk=r.scbk, name=r.id, flags=[LibFlag.EnforceSecure]).get()
                 for r in readers]
        ctx = osdp_sys.ControlPanel(infos)
        now = self.clock()

        def on_event(pd: int, ev: dict[str, Any]) -> int:
            r = readers[pd]
            if not (ctx.sc_status() >> pd) & 1:  # never in the clear
                r.stats.add("dropped")
                return 0
            r.event(ev, self.clock())
            return 0

        ctx.set_event_callback(on_event)
        for r in readers:
            r.since = now
        return ctx, readers

    def _session(self, channel: SerialChannel) -> ReaderError | None:
        """Run the control panel until the port fails (its typed error) or the bus stops (None)."""
        self.channel = channel
        ctx: Any = None
        readers: list[OsdpReader] = []
        restarted: dict[int, float] = {}
        disabled: set[int] = set()
        self._dirty = True
        while not self._stopping.is_set():
            # Readers attach one after another at start: build once they have (a rebuild
            # restarts every reader's Secure Channel handshake).
            if self._dirty and self.clock() - self._changed_at >= SETTLE:
                ctx, readers = self._build(channel)
                restarted = {r.address: self.clock() for r in readers}
                disabled = set()
            if ctx is None:
                self._wake.wait(self.tick)
                self._wake.clear()
                continue
            channel.pump()
            ctx.refresh()
            while self._commands:
                address, cmds = self._commands.popleft()
                idx = next((i for i, r in enumerate(readers) if r.address == address), None)
                if idx is not None:
                    for cmd in cmds:
                        ctx.submit_command(idx, cmd)
            if channel.error is not None:
                for r in readers:
                    r.port_failed()
                message = f"{self.port}: {channel.error}"[:200]
                return classify(channel.failure, message) if channel.failure else DeviceFailed(message)
            now = self.clock()
            status, sc = ctx.status(), ctx.sc_status()
            for i, r in enumerate(readers):
                answered = self.scanner.last_reply.get(r.address)
                fresh = answered is not None and now - answered < r.offline_after
                up = bool((status >> i) & 1 and (sc >> i) & 1) and fresh
                if i in disabled:  # the disable took effect on the last refresh: start afresh
                    if ctx.enable_pd(i):
                        disabled.discard(i)
                elif r.supervise(up, answered, now) and now - restarted[r.address] > self.retry_seconds:
                    restarted[r.address] = now
                    if ctx.disable_pd(i):
                        disabled.add(i)
            self._idle(channel)
        return None

    def _idle(self, channel: SerialChannel) -> None:
        """Wait up to ``tick``: less when a reply starts to arrive (the badge path) or another
        thread queued a command."""
        if self._wake.is_set():
            self._wake.clear()
            return
        fd = channel.fileno()
        if fd is None:
            self._wake.wait(self.tick)
        else:
            select.select([fd], [], [], self.tick)
        self._wake.clear()
