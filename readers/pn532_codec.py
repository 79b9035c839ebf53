"""PN532 host interface frames (PN532 user manual §6.2), pure: no I/O, fuzzable.

Normal information frame::

    00 00 FF LEN LCS TFI PD0 .. PDn DCS 00
    LEN = number of bytes in TFI + PD0..PDn, LCS = (-LEN) & 0xFF,
    DCS = (-(TFI + PD0 + .. + PDn)) & 0xFF, TFI = D4 host → PN532, D5 PN532 → host

ACK ``00 00 FF 00 FF 00``, NACK ``00 00 FF FF 00 00``, error frame
``00 00 FF 01 FF 7F 81 00`` (a normal frame with TFI 7F and no data). Extended frames
(``00 00 FF FF FF``) are not used by the commands this reader sends; they are dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

HOST_TO_PN532 = 0xD4
PN532_TO_HOST = 0xD5
ERROR_TFI = 0x7F

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
#: HSU wake-up: 0x55 0x55 then a long preamble of zeros, sent before the first command.
WAKEUP = b"\x55\x55" + bytes(14)

_START = b"\x00\xff"
MAX_LEN = 254  # LEN = 0xFF announces an extended frame


class Kind(enum.Enum):
    ACK = "ack"
    NACK = "nack"
    ERROR = "error"
    DATA = "data"


@dataclass(frozen=True)
class Frame:
    """One parsed item. ``raw`` is the exact bytes from the start code ``00 FF`` through
    the postamble, so a checker can verify LCS/DCS independently. ``drops_before`` is
    the parser's drop count when this frame completed, so a caller can tell whether a
    bad frame came after it in the stream (``parser.dropped > frame.drops_before``)."""

    kind: Kind
    tfi: int | None
    data: bytes
    raw: bytes
    drops_before: int = 0


def build_frame(data: bytes, tfi: int = HOST_TO_PN532) -> bytes:
    """A normal information frame carrying ``data`` (command code + parameters)."""
    length = len(data) + 1
    if length > MAX_LEN:
        raise ValueError(f"PN532 normal frame too long: {length} bytes")
    dcs = (-(tfi + sum(data))) & 0xFF
    return b"\x00\x00\xff" + bytes([length, (-length) & 0xFF, tfi]) + data + bytes([dcs, 0x00])


class FrameParser:
    """Feed it bytes in any chunking; it returns complete ACK, NACK, error and data frames.

    Every bad frame is dropped and counted in ``dropped``: a length checksum (LCS) or data
    checksum (DCS) that does not add up, a missing postamble, an unsupported extended
    frame. After a bad frame the parser resynchronises on the next start code ``00 FF``
    after the bad one's first byte, so a good frame hidden behind garbage is still found.
    Stray bytes outside frames (anything but the zero preamble/postamble bytes) count as
    one drop per run, unless the run follows a bad frame, whose rest it likely is.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.dropped = 0
        self._buf = bytearray()
        self._noise = False

    def reset(self) -> None:
        self._buf.clear()
        self._noise = False

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            item = self._next()
            if item is None:
                break
            out.append(item)
        return out

    def _discard(self, n: int) -> None:
        """Drop the first ``n`` buffered bytes that lie outside any frame."""
        if n <= 0:
            return
        if not self._noise and self._buf[:n].count(0) != n:
            self.dropped += 1
            self._noise = True
        del self._buf[:n]

    def _bad(self) -> None:
        self.dropped += 1
        self._noise = True
        del self._buf[:1]  # rescan from just after the bad frame's start code

    def _next(self) -> Frame | None:
        buf = self._buf
        while True:
            i = buf.find(_START)
            if i < 0:
                # Keep a trailing 00: it may be the first half of a start code.
                self._discard(len(buf) - 1 if buf.endswith(b"\x00") else len(buf))
                return None
            self._discard(i)
            if len(buf) < 4:
                return None
            length, lcs = buf[2], buf[3]
            if (length, lcs) in ((0x00, 0xFF), (0xFF, 0x00)):  # ACK, NACK
                if len(buf) < 5:
                    return None
                if buf[4] != 0x00:
                    self._bad()
                    continue
                raw = bytes(buf[:5])
                del buf[:5]
                return self._good(Kind.ACK if length == 0 else Kind.NACK, None, b"", raw)
            if (length + lcs) & 0xFF != 0 or length in (0x00, 0xFF):
                self._bad()  # bad LCS, or an extended frame (FF FF)
                continue
            end = 4 + length + 2  # 00 FF, LEN, LCS, TFI + data, DCS, postamble
            if len(buf) < end:  # at most 261 bytes wait here: LEN ≤ 254
                return None
            body = buf[4:4 + length]
            if (sum(body) + buf[4 + length]) & 0xFF != 0 or buf[end - 1] != 0x00:
                self._bad()
                continue
            raw = bytes(buf[:end])
            del buf[:end]
            tfi, payload = body[0], bytes(body[1:])
            if tfi == ERROR_TFI and not payload:
                return self._good(Kind.ERROR, tfi, b"", raw)
            return self._good(Kind.DATA, tfi, payload, raw)

    def _good(self, kind: Kind, tfi: int | None, data: bytes, raw: bytes) -> Frame:
        self.frames += 1
        self._noise = False
        return Frame(kind, tfi, data, raw, self.dropped)


# --- command payloads and responses (PN532 user manual §7) ------------------------------

GET_FIRMWARE_VERSION = 0x02
SAM_CONFIGURATION = 0x14
RF_CONFIGURATION = 0x32
IN_LIST_PASSIVE_TARGET = 0x4A

#: SAMConfiguration: normal mode, timeout 0x14 (× 50 ms, only used in virtual card mode), use IRQ.
SAM_NORMAL = bytes([SAM_CONFIGURATION, 0x01, 0x14, 0x01])
#: RFConfiguration item 0x05 (MaxRetries): MxRtyATR, MxRtyPSL, MxRtyPassiveActivation, all
#: finite (0xFF would retry forever), so InListPassiveTarget answers NbTg = 0 without a card.
RF_MAX_RETRIES = bytes([RF_CONFIGURATION, 0x05, 0x02, 0x01, 0x02])
#: InListPassiveTarget: at most one target, 106 kbps type A (ISO/IEC 14443 A).
LIST_ONE_TYPE_A = bytes([IN_LIST_PASSIVE_TARGET, 0x01, 0x00])

UID_LENGTHS = (4, 7, 10)


def parse_firmware(data: bytes) -> tuple[int, int, int, int]:
    """GetFirmwareVersion response ``03 IC Ver Rev Support`` → (IC, Ver, Rev, Support)."""
    if len(data) != 5 or data[0] != GET_FIRMWARE_VERSION + 1:
        raise ValueError("malformed GetFirmwareVersion response")
    return data[1], data[2], data[3], data[4]


def parse_target_uid(data: bytes) -> bytes | None:
    """InListPassiveTarget (106 kbps type A) response → the first target's UID, or None
    when no target was found.

    Response: ``4B NbTg [Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1 … (ATSLength ATS …)]``.
    Raises ValueError when malformed or when the UID is not 4, 7 or 10 bytes long.
    """
    if len(data) < 2 or data[0] != IN_LIST_PASSIVE_TARGET + 1:
        raise ValueError("not an InListPassiveTarget response")
    if data[1] == 0:
        if len(data) != 2:
            raise ValueError("trailing bytes after NbTg = 0")
        return None
    if data[1] > 2:
        raise ValueError("NbTg out of range")
    if len(data) < 7:
        raise ValueError("truncated target data")
    uid_len = data[6]
    if uid_len not in UID_LENGTHS:
        raise ValueError("UID length is not 4, 7 or 10")
    uid = bytes(data[7:7 + uid_len])
    if len(uid) != uid_len:
        raise ValueError("truncated UID")
    return uid
