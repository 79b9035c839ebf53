"""OSDP readers on an RS-485 bus, through libosdp's control panel, PROTOCOL.md §1 and §4.

One ``OsdpBus`` per serial ``port`` runs one libosdp control panel for every reader
configured on that port (each at its own ``address``) on one thread, which owns the
libosdp context: it calls ``refresh()`` every ``tick`` seconds, hands reads to the agent's
sink, sends the LED/buzzer commands other threads queued, and supervises the readers.
Other threads only queue (``feedback``) or attach/detach readers; the bus rebuilds its
control panel when the set of readers changes.

Security: Secure Channel is required (libosdp's ENFORCE_SECURE, and every event is
dropped unless the reader's Secure Channel is up). A reader that answers but cannot
establish Secure Channel (a wrong key, a reader still in install mode) is reported once
per episode through ``on_reader_error`` and never read.

Reads: a card read of 26 or 34 raw Wiegand bits gives the credential a Wiegand reader
gives for the same bits (``wiegand.FORMATS``: parity checked, then dropped); any other
length N gives ``bitsN:``. Key presses go through the same ``keypad.PinEntry`` as a
Wiegand keypad. Repeated reads of one card within ``holdoff_seconds`` are one read.

Supervision: a reader whose last reply is older than ``offline_after`` seconds (or that
libosdp declares offline) is reported ``offline``; one that answers with Secure Channel
up is ``online``; a local-status report with tamper set is ``tamper``. These go to the
sink's ``on_reader_state`` (``base.StateSink``) when it has one. An offline reader is
restarted in libosdp every ``retry_seconds`` so that it comes back as soon as it answers
(libosdp alone would wait up to five minutes).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import osdp_sys
import serial
from osdp import CardFormat, Command, CommandLEDColor, Event, LibFlag, LogLevel, PDInfo, StatusReportType

from edge.config import ReaderSection
from edge.errors import ReaderError
from wire.creds import bits_from_bytes, redact
from wire.errors import KeyFileError
from wire.keys import read_scbk_file

from .base import ReaderStats, ReadSink
from .keypad import HASH, STAR, PinEntry
from .osdp_link import FrameScanner, SerialChannel
from .serialbase import Backoff, Holdoff
from .wiegand import FORMATS

log = logging.getLogger(__name__)

TICK = 0.01
OFFLINE_AFTER = 0.5
RETRY_SECONDS = 1.0
#: A reader not up this long after the bus opened (or after it answered) is reported.
CONNECT_SECONDS = 2.0
#: The bus builds its control panel once no reader has attached or detached for this long.
SETTLE = 0.1
#: OSDP key codes besides the ASCII digits: ``*`` is DEL, ``#`` is CR (ASCII forms accepted too).
KEYS = {0x7F: STAR, ord("*"): STAR, 0x0D: HASH, ord("#"): HASH}

_GRANT = ({"command": Command.LED, "reader": 0, "led_number": 0, "temporary": True, "control_code": 2,
           "on_color": CommandLEDColor.Green, "off_color": CommandLEDColor.Green, "on_count": 10,
           "off_count": 0, "timer_count": 20},
          {"command": Command.Buzzer, "reader": 0, "control_code": 2, "on_count": 2, "off_count": 0,
           "rep_count": 1})
_DENY = ({"command": Command.LED, "reader": 0, "led_number": 0, "temporary": True, "control_code": 2,
          "on_color": CommandLEDColor.Red, "off_color": CommandLEDColor.Red, "on_count": 10,
          "off_count": 0, "timer_count": 20},
         {"command": Command.Buzzer, "reader": 0, "control_code": 2, "on_count": 10, "off_count": 0,
          "rep_count": 1})


def card_credential(nbits: int, data: bytes) -> str | None:
    """The credential string of a raw card read (PROTOCOL.md §1), or None to drop it."""
    if nbits <= 0 or len(data) < (nbits + 7) // 8:
        return None
    # 26 and 34 bits become wiegandNN: (parity checked, then dropped); any other length is
    # passed on whole as bitsN: (PROTOCOL.md §1), parity or not: only the reader knows the format.
    decode = FORMATS.get(nbits) if nbits in (26, 34) else None
    if decode is not None:
        value = int.from_bytes(data[: (nbits + 7) // 8], "big") >> (8 * ((nbits + 7) // 8) - nbits)
        return decode([(value >> (nbits - 1 - i)) & 1 for i in range(nbits)])
    try:
        return bits_from_bytes(nbits, data)
    except ValueError:
        return None


class OsdpReader:
    """One OSDP reader (``cfg.address`` on ``cfg.port``); its bus does the work."""

    kind = "osdp"

    def __init__(self, cfg: ReaderSection, sink: ReadSink, *, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, **timing: float) -> None:
        if not cfg.port or cfg.address is None or not cfg.scbk_file:
            raise ReaderError(f"reader {cfg.id}: an osdp reader needs port, address and scbk_file")
        self.id = cfg.id
        self.cfg = cfg
        self.sink = sink
        self.stats = ReaderStats()
        self.address = cfg.address
        self.keypad = PinEntry(cfg.keypad_timeout_seconds)
        self.holdoff = Holdoff(cfg.holdoff_seconds)
        self.clock = clock
        self.state = "unknown"
        self.tamper = False
        self.refused = False
        self.scbk: bytes | None = None
        #: When the bus's control panel took this reader on (the connect grace runs from here).
        self.since = 0.0
        #: Events libosdp delivered for this reader over Secure Channel (tests wait on it).
        self.events = 0
        self._backoff = backoff or Backoff()
        self._timing = timing
        self._bus: OsdpBus | None = None

    def start(self) -> None:
        try:
            self.scbk = read_scbk_file(self.cfg.scbk_file or "")
        except KeyFileError as exc:
            raise ReaderError(f"reader {self.id}: {exc.args[0]}") from None
        self._bus = attach(self, self._backoff, self._timing)

    def stop(self) -> None:
        if self._bus is not None:
            detach(self._bus, self)
            self._bus = None

    @property
    def online(self) -> bool:
        return self.state == "online"

    def feedback(self, granted: bool) -> None:
        """Queue green + short beep (grant) or red + long beep (deny); returns at once."""
        bus = self._bus
        if bus is not None:
            bus.submit(self.address, _GRANT if granted else _DENY)

    # --- called on the bus thread ---------------------------------------------------------

    def event(self, ev: dict[str, Any], now: float) -> None:
        self.events += 1
        kind = ev.get("event")
        if kind == Event.CardRead:
            fmt = ev.get("format")
            data = ev.get("data") or b""
            cred = None
            if fmt in (CardFormat.Wiegand, CardFormat.Unspecified):
                cred = card_credential(int(ev.get("length") or 0), bytes(data))
            if cred is None:
                self.stats.add("dropped")
                log.debug("reader %s: card read dropped (format %s)", self.id, fmt)
            elif self.holdoff.admit(cred, now):
                self._deliver(cred)
        elif kind == Event.KeyPress:
            for b in bytes(ev.get("data") or b""):
                key = b - 0x30 if 0x30 <= b <= 0x39 else KEYS.get(b)
                if key is None:
                    self.stats.add("dropped")
                    continue
                before = self.keypad.dropped
                cred = self.keypad.key(key, now)
                if self.keypad.dropped > before:
                    self.stats.add("dropped")
                if cred is not None:
                    self._deliver(cred)
        elif kind == Event.Status and ev.get("type") == StatusReportType.Local:
            report = bytes(ev.get("report") or b"")
            tamper = bool(report[:1] and report[0])
            if tamper and not self.tamper:
                self._state("tamper")
            self.tamper = tamper

    def _deliver(self, cred: str) -> None:
        self.stats.add("reads")
        log.debug("reader %s: read %s", self.id, redact(cred))
        try:
            self.sink.on_credential(self.id, cred)
        except Exception as exc:  # the sink's bug must not kill the bus thread
            log.error("reader %s: sink refused a read: %s", self.id, type(exc).__name__)

    def _state(self, state: str) -> None:
        log.info("reader %s: %s", self.id, state)
        fn = getattr(self.sink, "on_reader_state", None)
        if fn is not None:
            try:
                fn(self.id, state)
            except Exception as exc:
                log.error("reader %s: sink refused a state: %s", self.id, type(exc).__name__)

    def error(self, msg: str) -> None:
        self.stats.add("errors")
        log.warning("reader %s: %s", self.id, msg)
        try:
            self.sink.on_reader_error(self.id, msg)
        except Exception as exc:
            log.error("reader %s: sink refused an error: %s", self.id, type(exc).__name__)

    def supervise(self, up: bool, answered: float | None, now: float) -> bool:
        """Update online/offline/refused from this tick's facts; True to restart it in libosdp."""
        offline_after = self._timing.get("offline_after", OFFLINE_AFTER)
        connect = self._timing.get("connect_seconds", CONNECT_SECONDS)
        if up:
            if self.state != "online":
                self.state = "online"
                self.refused = False
                self._state("online")
            return False
        heard = answered is not None and now - answered < offline_after
        grace = now - self.since <= connect  # a control panel just (re)built is still handshaking
        if (self.state == "online" and not (heard and grace)) or (self.state == "unknown" and not grace):
            self.state = "offline"
            self._state("offline")
        if heard and not self.refused and not grace:
            self.refused = True
            self.error("answers but refuses Secure Channel (wrong key, or still in install mode?); "
                       "not read until it accepts the configured key")
        return self.state == "offline"


_REGISTRY_LOCK = threading.Lock()
_BUSES: dict[str, OsdpBus] = {}


def attach(reader: OsdpReader, backoff: Backoff, timing: dict[str, float]) -> OsdpBus:
    """Join (or start) the bus of ``reader.cfg.port``."""
    port = reader.cfg.port or ""
    with _REGISTRY_LOCK:
        bus = _BUSES.get(port)
        if bus is None:
            bus = _BUSES[port] = OsdpBus(port, reader.cfg.baudrate or 9600, backoff=backoff,
                                         clock=reader.clock, **timing)
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
                    for r in self._snapshot():
                        r.error(f"cannot open {self.port}: {exc}"[:200])
                self._stopping.wait(next(delays))
                continue
            try:
                error = self._session(SerialChannel(ser, self.scanner, self.clock))
            except Exception as exc:  # a bug must not end supervision of the other readers silently
                log.exception("osdp bus %s: session failed", self.port)
                error = f"{type(exc).__name__}: {exc}"
            finally:
                ser.close()
            if error is not None:
                if not reported:
                    reported = True
                    for r in self._snapshot():
                        r.error(f"{self.port}: {error}"[:200])
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

    def _session(self, channel: SerialChannel) -> str | None:
        """Run the control panel until the port fails (its error) or the bus stops (None)."""
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
                    if r.state == "online":
                        r.state = "offline"
                        r._state("offline")
                return channel.error
            now = self.clock()
            status, sc = ctx.status(), ctx.sc_status()
            for i, r in enumerate(readers):
                answered = self.scanner.last_reply.get(r.address)
                fresh = answered is not None and now - answered < r._timing.get("offline_after", OFFLINE_AFTER)
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
