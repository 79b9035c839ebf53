"""The byte side of an OSDP bus: the serial channel libosdp's control panel talks through,
and a frame scanner that watches what the readers send back.

libosdp does the protocol (polling, Secure Channel, retries). Its own notion of "offline"
is slow (eight one-second probes) and it cannot tell "no answer" from "answers, but
refuses our key". So every byte that comes in from the bus also goes through
``FrameScanner``: it cuts the stream into OSDP frames by their header (SOM 0x53, address,
length, control; CRC-16 or checksum verified), notes *when* each address last answered
(a reply carries the address with bit 7 set) and counts what is not a valid frame. The
scanner only observes: every frame still goes to libosdp, which decides what it means.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import serial
from osdp import Channel

log = logging.getLogger(__name__)

SOM = 0x53
#: Bytes that may precede a frame (the OSDP 2.2 mark byte) and are not junk.
MARK = 0xFF
MIN_FRAME = 7  # SOM, addr, len (2), ctrl, reply code, checksum
MAX_FRAME = 1440
#: The scanner never holds more than this many unparsed bytes.
MAX_BUFFER = 4 * MAX_FRAME


def crc16(data: bytes | bytearray | memoryview) -> int:
    """OSDP's CRC-16 (CCITT polynomial 0x1021, initial value 0x1D0F)."""
    crc = 0x1D0F
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class FrameScanner:
    """Cuts a byte stream into OSDP frames; not thread-safe (the bus thread owns it).

    ``feed(data, now)`` records, for each valid reply frame, ``last_reply[address] = now``.
    Counters: ``frames`` (valid frames seen, any direction), ``junk`` (bytes outside any
    frame), ``bad`` (frame headers whose length or check failed).
    """

    def __init__(self) -> None:
        self.last_reply: dict[int, float] = {}
        self.frames = 0
        self.junk = 0
        self.bad = 0
        self._buf = bytearray()

    def feed(self, data: bytes, now: float) -> None:
        buf = self._buf
        buf.extend(data)
        while buf:
            start = buf.find(SOM)
            if start < 0:
                self.junk += sum(1 for b in buf if b != MARK)
                buf.clear()
                return
            if start:
                self.junk += sum(1 for b in buf[:start] if b != MARK)
                del buf[:start]
            if len(buf) < 5:
                break
            length = buf[2] | (buf[3] << 8)
            if not MIN_FRAME <= length <= MAX_FRAME:
                self.bad += 1
                del buf[:1]
                continue
            if len(buf) < length:
                if len(buf) > MAX_BUFFER:  # cannot happen with MAX_FRAME < MAX_BUFFER; belt and braces
                    buf.clear()
                break
            frame = memoryview(buf)[:length]
            # control bit 2: a CRC-16 trails the frame, else a one-byte checksum
            ok = crc16(frame[:-2]) == (frame[-2] | (frame[-1] << 8)) if buf[4] & 0x04 else sum(frame) & 0xFF == 0
            frame.release()
            if not ok:
                self.bad += 1
                del buf[:1]
                continue
            self.frames += 1
            if buf[1] & 0x80:
                self.last_reply[buf[1] & 0x7F] = now
            del buf[:length]


class SerialChannel(Channel):  # type: ignore[misc]  # libosdp ships no types
    """A libosdp channel over a pyserial port; incoming bytes also go to ``scanner``.

    libosdp reads only while it waits for a reply; the bus therefore calls ``pump()`` every
    tick, which drains the port into a buffer of at most ``rx_limit`` bytes (the oldest
    bytes beyond it are dropped and counted in ``overflow``: a device that floods the bus
    cannot stall the port or grow memory) and shows every byte to the scanner. libosdp's
    ``read`` is served from that buffer. ``read``/``write`` are called from inside
    ``refresh()`` on the bus thread and never raise (libosdp could not handle it): a
    device error is kept in ``error`` (its text) and ``failure`` (the exception) for the bus
    to act on.
    """

    def __init__(self, ser: serial.Serial, scanner: FrameScanner,
                 clock: Callable[[], float] = time.monotonic, *, rx_limit: int = 2 * MAX_FRAME) -> None:
        super().__init__()
        self.ser = ser
        self.scanner = scanner
        self.clock = clock
        self.rx_limit = rx_limit
        self.error: str | None = None
        self.failure: BaseException | None = None
        self.overflow = 0
        self.received = 0
        self._rx = bytearray()

    def fileno(self) -> int | None:
        """The port's file descriptor to wait on, when it has one (not every pyserial URL)."""
        try:
            fd = self.ser.fileno()
        except (AttributeError, OSError, ValueError, serial.SerialException):
            return None
        return fd if isinstance(fd, int) else None

    @property
    def pending(self) -> int:
        """Bytes received and not yet taken by libosdp."""
        return len(self._rx)

    def pump(self, max_bytes: int = 64 * 1024) -> None:
        """Drain what the port has (up to ``max_bytes``) into the buffer."""
        while self.error is None and max_bytes > 0:
            try:
                data = self.ser.read(min(4096, max_bytes))
            except (serial.SerialException, OSError, TypeError) as exc:
                self._fail(exc)
                return
            if not data:
                return
            max_bytes -= len(data)
            self.received += len(data)
            self.scanner.feed(data, self.clock())
            self._rx.extend(data)
            excess = len(self._rx) - self.rx_limit
            if excess > 0:
                self.overflow += excess
                del self._rx[:excess]

    def read(self, max_bytes: int) -> bytes:
        if not self._rx:
            self.pump(max_bytes)
        data = bytes(self._rx[:max_bytes])
        del self._rx[:max_bytes]
        return data

    def write(self, buf: bytes) -> int:
        if self.error is not None:
            return 0
        try:
            n = self.ser.write(buf)
        except (serial.SerialException, OSError) as exc:
            self._fail(exc)
            return 0
        return len(buf) if n is None else int(n)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.ser.flush()
            except (serial.SerialException, OSError, TypeError) as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        self.error = f"{type(exc).__name__}: {exc}"[:200]
        log.debug("osdp channel failed: %s", self.error)
