"""NXP PN532 13.56 MHz reader over HSU (UART 115200 8N1), PROTOCOL.md §1.

Per (re)open: HSU wake-up preamble, GetFirmwareVersion as a probe, SAMConfiguration
(normal mode), RFConfiguration MaxRetries (finite, so a poll without a card returns),
then InListPassiveTarget (one target, 106 kbps type A) in a loop. Each command waits for
the ACK, then for its response, with timeouts; a NACK, an error frame or a timeout makes
it resend the command, a garbled response makes it send NACK (the PN532 then repeats its
response). When a command fails ``attempts`` times, the device is treated as failed: one
error report per episode, close, reopen with backoff.

The frame format lives in ``pn532_codec`` (pure, fuzzed); this module does the I/O.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import ClassVar

import serial

from wire.creds import iso14443a

from .base import Backoff, ReadSink
from .config import SerialConfig
from .errors import ProtocolError, ReaderError
from .pn532_codec import (
    GET_FIRMWARE_VERSION,
    LIST_ONE_TYPE_A,
    NACK,
    PN532_TO_HOST,
    RF_MAX_RETRIES,
    SAM_NORMAL,
    WAKEUP,
    Frame,
    FrameParser,
    Kind,
    build_frame,
    parse_firmware,
    parse_target_uid,
)
from .serialbase import Clock, SerialReader

log = logging.getLogger(__name__)


#: What to check when a device does not answer like a PN532.
ADVICE = "is it a PN532 in HSU (UART) mode at 115200 baud, and is it powered?"


class Pn532Config(SerialConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``type = "pn532"``: ``port`` (required), ``baudrate`` (default 115200), ``holdoff_seconds``."""

    type_name: ClassVar[str] = "pn532"
    default_baudrate: ClassVar[int] = 115200

    def create(self, sink: ReadSink, *, backoff: Backoff | None = None) -> Pn532Reader:
        return Pn532Reader(self, sink, backoff=backoff)


class Pn532Reader(SerialReader):
    """A PN532 on ``cfg.port`` (default 115200 baud), in HSU mode.

    ``Pn532Reader(cfg, sink, *, backoff=None, clock=time.monotonic, poll_interval=0.1,
    attempts=3, ack_timeout=0.5, response_timeout=1.0)``.

    One presentation is one read: the same UID in consecutive polls (gaps shorter than
    ``cfg.holdoff_seconds``) is read once; after a poll that found no card, or a gap
    longer than the hold-off, it counts again. A different UID is read at once.
    ``stats.dropped`` counts bad frames and malformed target data; ``polls`` counts
    completed InListPassiveTarget polls; ``firmware`` is (IC, Ver, Rev, Support) of the
    last successful probe.
    """

    kind = "pn532"

    def __init__(self, cfg: SerialConfig, sink: ReadSink, *, backoff: Backoff | None = None,
                 clock: Clock = time.monotonic, poll_interval: float = 0.1, attempts: int = 3,
                 ack_timeout: float = 0.5, response_timeout: float = 1.0) -> None:
        super().__init__(cfg, sink, backoff=backoff, clock=clock)
        self.codec = FrameParser()
        self.poll_interval = poll_interval
        self.attempts = attempts
        self.ack_timeout = ack_timeout
        self.response_timeout = response_timeout
        self._pending: collections.deque[Frame] = collections.deque()
        self.polls = 0
        self.firmware: tuple[int, int, int, int] | None = None

    # --- the session ------------------------------------------------------------------

    def _session(self, ser: serial.Serial) -> None:
        self.codec.reset()
        self._drain(ser)
        ser.write(WAKEUP)  # HSU: wakes the PN532 from power-down; it ignores the bytes
        fw = parse_firmware(self._command(ser, bytes([GET_FIRMWARE_VERSION])))
        self._command(ser, SAM_NORMAL)
        self._command(ser, RF_MAX_RETRIES)
        self.firmware = fw
        log.info("reader %s: PN532 (IC 0x%02X) firmware %d.%d on %s", self.id, fw[0], fw[1], fw[2], self.port)
        self._healthy()
        while not self._stop.is_set():
            response = self._command(ser, LIST_ONE_TYPE_A)
            self.polls += 1
            now = self.clock()
            try:
                uid = parse_target_uid(response)
            except ValueError as exc:
                log.debug("reader %s: target data dropped: %s", self.id, exc)
                self.stats.add("dropped")
            else:
                if uid is None:
                    self.holdoff.clear()  # the card has left the field
                else:
                    self._deliver(iso14443a(uid), now)
            self._stop.wait(self.poll_interval)

    # --- commands -----------------------------------------------------------------------

    def _command(self, ser: serial.Serial, payload: bytes) -> bytes:
        """Send a command and return its response data (``payload[0] + 1``, params…).

        Raises ProtocolError after ``attempts`` failed tries (no ACK, NACK, error frame,
        no response), or at once when the reader is being stopped."""
        frame = build_frame(payload)
        want = payload[0] + 1

        def is_response(f: Frame) -> bool:
            if f.kind is Kind.ERROR:
                return True
            return f.kind is Kind.DATA and f.tfi == PN532_TO_HOST and f.data[:1] == bytes([want])

        for attempt in range(1, self.attempts + 1):
            self._drain(ser)  # stale answers of an earlier try are not this one's
            ser.write(frame)
            ack = self._wait(ser, self.ack_timeout, lambda f: f.kind in (Kind.ACK, Kind.NACK, Kind.ERROR))
            if ack is None or ack.kind is not Kind.ACK:
                log.debug("reader %s: command 0x%02X try %d: %s", self.id, payload[0], attempt,
                          "no ACK" if ack is None else ack.kind.value)
                continue
            nacks = 0
            mark = ack.drops_before  # a bad frame after the ACK is the garbled response
            while True:
                response = self._wait(ser, self.response_timeout, is_response, drops_since=mark)
                if response is not None:
                    if response.kind is Kind.DATA:
                        return response.data
                    log.debug("reader %s: command 0x%02X try %d: error frame", self.id, payload[0], attempt)
                    break
                if self.codec.dropped != mark and nacks < self.attempts:
                    nacks += 1  # ask the PN532 to send its response again
                    mark = self.codec.dropped
                    ser.write(NACK)
                    continue
                log.debug("reader %s: command 0x%02X try %d: no response", self.id, payload[0], attempt)
                break
        raise ProtocolError(f"PN532 on {self.port} does not answer command 0x{payload[0]:02X}", advice=ADVICE)

    def _wait(self, ser: serial.Serial, timeout: float, accept: Callable[[Frame], bool], *,
              drops_since: int | None = None) -> Frame | None:
        """The first frame ``accept`` takes within ``timeout``; None on timeout, or as soon
        as the parser's drop count differs from ``drops_since``. Other frames are ignored."""
        deadline = time.monotonic() + timeout
        while True:
            if self._stop.is_set():
                raise ReaderError("stopping")
            if not self._pending:
                self._pending.extend(self._feed(self._read_some(ser)))
            while self._pending:  # an ACK and its response often arrive in one read
                f = self._pending.popleft()
                if accept(f):
                    return f
            if drops_since is not None and self.codec.dropped != drops_since:
                return None
            if time.monotonic() >= deadline:
                return None

    def _drain(self, ser: serial.Serial) -> None:
        """Parse (so that garbage is counted) and discard whatever is waiting."""
        self._pending.clear()
        while ser.in_waiting:
            self._feed(ser.read(ser.in_waiting))

    def _feed(self, data: bytes) -> list[Frame]:
        if not data:
            return []
        before = self.codec.dropped
        frames = self.codec.feed(data)
        if self.codec.dropped != before:
            self.stats.add("dropped", self.codec.dropped - before)
        return frames
