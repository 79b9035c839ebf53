"""RDM6300 / EM4100 125 kHz reader on a UART (9600 8N1), PROTOCOL.md §1.

The module sends nothing; it sends 14-byte frames, STX (0x02), 10 ASCII hex digits
(version byte + 32-bit card id), 2 ASCII hex digits of checksum (XOR of the 5 data
bytes), ETX (0x03), over and over while a card stays in the field. ``Rdm6300Parser`` is
the pure part: bytes in, credential strings out, one per presentation.
"""

from __future__ import annotations

import logging
import time
from functools import reduce
from operator import xor
from typing import ClassVar

import serial

from wire.creds import em4100

from .base import Backoff, ReadSink
from .config import SerialConfig
from .serialbase import Clock, Holdoff, SerialReader

log = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
FRAME_LEN = 14
_STX = bytes([STX])
_HEX = frozenset(b"0123456789ABCDEFabcdef")


def frame_digits(frame: bytes) -> str | None:
    """The 10 upper-case data digits of a complete 14-byte frame, or None with the reason
    logged at debug level (never the frame itself: it may hold a valid card id)."""
    if len(frame) != FRAME_LEN or frame[0] != STX:
        reason = "wrong length"
    elif frame[13] != ETX:
        reason = "missing ETX"
    elif not _HEX.issuperset(frame[1:13]):
        reason = "non-hex digit"
    else:
        values = bytes.fromhex(frame[1:13].decode("ascii"))
        if reduce(xor, values[:5]) == values[5]:
            return frame[1:11].decode("ascii").upper()
        reason = "wrong checksum"
    log.debug("rdm6300 frame dropped: %s", reason)
    return None


class Rdm6300Parser:
    """Stateful, pure RDM6300 frame parser.

    ``feed(data, now)`` takes any chunk of the byte stream and returns the credential
    strings (``em4100:XXXXXXXXXX``) of the frames it completed, after the hold-off: a
    repeat of the same card with a gap shorter than the hold-off since its last valid
    frame is suppressed, a different card is returned at once.

    Every bad frame is dropped and counted in ``dropped``: wrong checksum, non-hex digit,
    missing ETX, or too short (an STX arrived before 14 bytes did: the parser
    resynchronises on that STX). A run of stray bytes outside any frame (line noise, a
    wrong baud rate) counts as one drop, unless it directly follows a dropped frame, whose
    rest it most likely is. ``frames`` counts valid frames, ``suppressed`` the repeats.
    """

    def __init__(self, holdoff: Holdoff | float = 0.0) -> None:
        self.holdoff = holdoff if isinstance(holdoff, Holdoff) else Holdoff(holdoff)
        self.frames = 0
        self.dropped = 0
        self.suppressed = 0
        self._buf = bytearray()  # the frame being collected (starts with STX), or empty
        self._noise = False  # a run of stray bytes is already accounted for

    def reset(self) -> None:
        """Forget a partial frame (the device was reopened); counters and hold-off stay."""
        self._buf.clear()
        self._noise = False

    def feed(self, data: bytes, now: float) -> list[str]:
        out: list[str] = []
        buf = self._buf
        i, n = 0, len(data)
        while i < n:
            if not buf:
                j = data.find(_STX, i)
                stop = n if j < 0 else j
                if stop > i and not self._noise:
                    self.dropped += 1
                    self._noise = True
                if j < 0:
                    break
                buf.append(STX)
                i = j + 1
                continue
            chunk = data[i:i + FRAME_LEN - len(buf)]
            k = chunk.find(_STX)
            if k >= 0:  # a new frame starts before this one is complete
                log.debug("rdm6300 frame dropped: wrong length")
                self._bad()
                buf.clear()
                buf.append(STX)
                i += k + 1
                continue
            buf += chunk
            i += len(chunk)
            if len(buf) == FRAME_LEN:
                digits = frame_digits(bytes(buf))
                buf.clear()
                if digits is None:
                    self._bad()
                    continue
                self.frames += 1
                self._noise = False
                cred = em4100(digits)
                if self.holdoff.admit(cred, now):
                    out.append(cred)
                else:
                    self.suppressed += 1
        return out

    def _bad(self) -> None:
        self.dropped += 1
        self._noise = True


class Rdm6300Config(SerialConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``type = "rdm6300"``: ``port`` (required), ``baudrate`` (default 9600), ``holdoff_seconds``."""

    type_name: ClassVar[str] = "rdm6300"
    default_baudrate: ClassVar[int] = 9600

    def create(self, sink: ReadSink, *, backoff: Backoff | None = None) -> Rdm6300Reader:
        return Rdm6300Reader(self, sink, backoff=backoff)


class Rdm6300Reader(SerialReader):
    """An RDM6300 on ``cfg.port`` (default 9600 baud).

    ``Rdm6300Reader(cfg, sink, *, backoff=None, clock=time.monotonic)``: ``clock`` times
    the hold-off (``cfg.holdoff_seconds``). ``stats.dropped`` counts bad frames;
    ``parser.frames`` counts valid frames, repeats included.
    """

    kind = "rdm6300"

    def __init__(self, cfg: SerialConfig, sink: ReadSink, *, backoff: Backoff | None = None,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(cfg, sink, backoff=backoff, clock=clock)
        self.parser = Rdm6300Parser(self.holdoff)

    def _session(self, ser: serial.Serial) -> None:
        self.parser.reset()
        first = True
        while not self._stop.is_set():
            data = self._read_some(ser)
            if first:  # the port opened and reads: the device is back
                self._healthy()
                first = False
            if not data:
                continue
            before = self.parser.dropped
            for cred in self.parser.feed(data, self.clock()):
                self._emit(cred)
            if self.parser.dropped != before:
                self.stats.add("dropped", self.parser.dropped - before)
