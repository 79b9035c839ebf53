"""OSDP readers on an RS-485 bus, through libosdp's control panel, PROTOCOL.md §1 and §4.

One ``osdp_bus.OsdpBus`` per serial ``port`` runs one libosdp control panel for every
reader configured on that port (each at its own ``address``) on one thread; each
``OsdpReader`` attaches to its port's bus, which hands it the events libosdp delivers for
its address. Other threads only queue (``feedback``) or attach/detach readers.

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
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import msgspec
from msgspec import Meta
from osdp import CardFormat, Command, CommandLEDColor, Event, StatusReportType

from wire.creds import bits_from_bytes, redact
from wire.errors import KeyFileError
from wire.keys import read_scbk_file

from .base import Backoff, ReaderStats, ReadSink
from .config import Resolve, SerialConfig
from .errors import ProtocolError, ReaderConfigError, ReaderError
from .keypad import DEFAULT_KEYPAD_TIMEOUT, HASH, STAR, PinEntry
from .osdp_bus import CONNECT_SECONDS, OFFLINE_AFTER, OsdpBus, attach, detach

__all__ = ["OFFLINE_AFTER", "OsdpConfig", "OsdpReader", "card_credential"]
from .serialbase import Holdoff
from .wiegand import FORMATS

log = logging.getLogger(__name__)

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


class OsdpConfig(SerialConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``type = "osdp"``: ``port`` (the RS-485 bus; several readers may share it),
    ``baudrate`` (default 9600), ``address`` (0-126) and ``scbk_file`` (its Secure Channel
    Base Key, 32 hex digits, owner-only), all required; ``holdoff_seconds``,
    ``keypad_timeout_seconds``."""

    type_name: ClassVar[str] = "osdp"
    default_baudrate: ClassVar[int] = 9600

    #: The reader's address on its bus; 127 is the broadcast address.
    address: Annotated[int, Meta(ge=0, le=126)] | None = None
    scbk_file: str | None = None
    #: A partial PIN entry on the reader's keypad is dropped after this long without a key.
    keypad_timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = DEFAULT_KEYPAD_TIMEOUT

    def settle(self, *, resolve: Resolve, data_dir: Path) -> Self:
        cfg = super().settle(resolve=resolve, data_dir=data_dir)
        if cfg.address is None:
            raise ReaderConfigError("address", "an osdp reader needs its bus address (0-126)")
        if not cfg.scbk_file:
            raise ReaderConfigError("scbk_file", "an osdp reader needs scbk_file (its Secure Channel key; "
                                                 "torwart-edge readers keyset writes it)")
        return msgspec.structs.replace(cfg, scbk_file=resolve(cfg.scbk_file))

    def check_files(self) -> None:
        if self.scbk_file:
            try:
                read_scbk_file(self.scbk_file)
            except KeyFileError as exc:
                raise ReaderConfigError("scbk_file", str(exc.args[0])) from None

    def shared(self) -> dict[str, tuple[Hashable, str]]:
        return {"address": ((self.port, self.address), f"address {self.address} on {self.port}")}

    @classmethod
    def for_device(cls, reader_id: str, device: str, *, holdoff_seconds: float = 1.0) -> Self:
        raise ReaderConfigError("type", "an osdp reader needs its bus address and key besides the device")

    def create(self, sink: ReadSink, *, backoff: Backoff | None = None) -> OsdpReader:
        return OsdpReader(self, sink, backoff=backoff)


class OsdpReader:
    """One OSDP reader (``cfg.address`` on ``cfg.port``); its bus does the work.

    A reader that answers but refuses Secure Channel is reported as a ProtocolError; a port
    that cannot be opened or fails, by its type (``errors.classify``)."""

    kind = "osdp"

    def __init__(self, cfg: OsdpConfig, sink: ReadSink, *, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, **timing: float) -> None:
        if not cfg.port or cfg.address is None or not cfg.scbk_file:
            raise ReaderConfigError("port" if not cfg.port else "address" if cfg.address is None else "scbk_file",
                                    f"reader {cfg.id}: an osdp reader needs port, address and scbk_file")
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
            raise ReaderConfigError("scbk_file", f"reader {self.id}: {exc.args[0]}") from None
        self._bus = attach(self, self.cfg.port or "", self.cfg.baudrate or 9600, self._backoff, self._timing)

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

    def error(self, error: ReaderError) -> None:
        self.stats.add("errors")
        log.warning("reader %s: %s", self.id, error)
        try:
            self.sink.on_reader_error(self.id, error)
        except Exception as exc:
            log.error("reader %s: sink refused an error: %s", self.id, type(exc).__name__)

    @property
    def offline_after(self) -> float:
        return self._timing.get("offline_after", OFFLINE_AFTER)

    def port_failed(self) -> None:
        """The bus's port failed: an online reader is offline now."""
        if self.state == "online":
            self.state = "offline"
            self._state("offline")

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
            self.error(ProtocolError("answers but refuses Secure Channel (wrong key, or still in install mode?); "
                                     "not read until it accepts the configured key",
                                     advice="is scbk_file the reader's key (torwart-edge readers keyset)?"))
        return self.state == "offline"
