"""Wiegand 26/34/35/37 reader on two GPIO inputs (D0, D1) through gpiozero, PROTOCOL.md §1.

Both lines idle high (pull-up); a pulse is the line going low: a pulse on D0 is a 0 bit,
on D1 a 1 bit. A burst ends when no bit arrives for ``timeout`` (25 ms by default; bits
within a burst are 1–2 ms apart). ``WiegandDecoder`` is the pure part; ``WiegandReader``
wires it to the pins and runs a timer thread so that a burst is delivered without
waiting for a further edge. Keypad bursts (4 and 8 bits, one per key) are assembled into
``pin:`` credentials by ``keypad.PinEntry``: a keypad is a wiegand reader like any other
(a keypad beside an RDM6300 or PN532 is a second reader entry on the same door).

26 and 34 bits give ``wiegand26:`` / ``wiegand34:`` + the data bits. The 35-bit HID
Corporate 1000 and the 37-bit HID H10304 formats have no prefix of their own in
PROTOCOL.md §1; after their parity checks they give ``bits35:`` / ``bits37:`` + all the
bits, left-aligned in whole bytes: the string an OSDP reader gives for the same card, so
a card enrolled once works on either reader type.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from msgspec import Meta

from wire.creds import bits as bits_cred
from wire.creds import redact, wiegand

from .base import Backoff, ReaderStats, ReadSink
from .config import Pin, ReaderConfig, Resolve
from .errors import DeviceBusy, DeviceFailed, ReaderConfigError
from .keypad import DEFAULT_KEYPAD_TIMEOUT, KEY_FORMATS, PinEntry
from .serialbase import Clock, Holdoff

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 0.025
#: Longer bursts are noise; stop collecting (the burst is dropped when it ends).
MAX_BITS = 64


def _card(nbits: int) -> Callable[[list[int]], str | None]:
    """Decoder for a card format of ``nbits``: leading even parity over the first half of
    the data bits, the data bits, trailing odd parity over the second half."""
    half = (nbits - 2) // 2

    def decode(bits: list[int]) -> str | None:
        data = bits[1:-1]
        if (bits[0] + sum(data[:half])) % 2 != 0 or (sum(data[half:]) + bits[-1]) % 2 != 1:
            return None
        value = 0
        for b in data:
            value = (value << 1) | b
        return wiegand(nbits, value)

    return decode


def _value(bits: list[int]) -> int:
    value = 0
    for b in bits:
        value = (value << 1) | b
    return value


def _corporate1000(bits: list[int]) -> str | None:
    """HID Corporate 1000, 35 bits (positions 1..35, first sent = 1): 12-bit company id
    (3-14), 20-bit card number (15-34). Position 2 is even parity over 3-4, 6-7, …, 33-34
    (every position from 3 to 34 not ≡ 2 mod 3), position 35 odd parity over 2-3, 5-6, …,
    32-33 (every position from 2 to 33 not ≡ 1 mod 3), position 1 odd parity over all 35."""
    at = {p: bits[p - 1] for p in range(1, 36)}
    p2 = at[2] + sum(at[p] for p in range(3, 35) if p % 3 != 2)
    p35 = at[35] + sum(at[p] for p in range(2, 34) if p % 3 != 1)
    if p2 % 2 != 0 or p35 % 2 != 1 or sum(bits) % 2 != 1:
        return None
    return bits_cred(35, _value(bits))


def _h10304(bits: list[int]) -> str | None:
    """HID H10304, 37 bits: 16-bit facility code (positions 2-17), 19-bit card number
    (18-36); position 1 even parity over 1-19, position 37 odd parity over 19-37 (the two
    halves share position 19)."""
    if sum(bits[0:19]) % 2 != 0 or sum(bits[18:37]) % 2 != 1:
        return None
    return bits_cred(37, _value(bits))


#: Burst length → card decoder (None: bad parity). Keypad bursts (4 and 8 bits) are
#: keys, decoded by ``keypad.KEY_FORMATS`` and assembled into a PIN by ``PinEntry``.
FORMATS: dict[int, Callable[[list[int]], str | None]] = {
    26: _card(26), 34: _card(34), 35: _corporate1000, 37: _h10304}


class WiegandDecoder:
    """Pure, stateful Wiegand burst decoder.

    ``feed_bit(bit, t)`` adds a bit at time ``t`` (seconds); if the previous bit is more
    than ``timeout`` older, the previous burst ends first and its credential, if any, is
    returned. ``flush(t)`` ends the pending burst when it has been quiet for ``timeout``
    at time ``t`` (``flush(None)`` ends it unconditionally). A burst of an unknown length
    or with bad parity is dropped and counted in ``dropped``; ``bursts`` counts all.
    A 4- or 8-bit burst is a key press, handed to ``keypad`` (a ``PinEntry`` with an
    inter-key timeout of ``keypad_timeout`` seconds); a complete entry is returned as
    ``pin:DIGITS``, a malformed key or a PIN of a wrong length is counted in ``dropped``.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *, keypad_timeout: float = DEFAULT_KEYPAD_TIMEOUT) -> None:
        self.timeout = timeout
        self.keypad = PinEntry(keypad_timeout)
        self.bursts = 0
        self.dropped = 0
        self._bits: list[int] = []
        self._overflow = False
        self._last = 0.0

    @property
    def pending(self) -> bool:
        return bool(self._bits) or self._overflow

    @property
    def deadline(self) -> float | None:
        """When the pending burst ends if no further bit arrives."""
        return self._last + self.timeout if self.pending else None

    def feed_bit(self, bit: int, t: float) -> list[str]:
        bits = self._bits
        out = self.flush(t) if (bits or self._overflow) and t - self._last > self.timeout else []
        self._last = t
        bits = self._bits  # flush() starts a new list
        if len(bits) < MAX_BITS:
            bits.append(1 if bit else 0)
        else:
            self._overflow = True
        return out

    def flush(self, t: float | None) -> list[str]:
        if not self.pending or (t is not None and t - self._last < self.timeout):
            return []
        bits, overflow = self._bits, self._overflow
        self._bits, self._overflow = [], False
        self.bursts += 1
        key_of = None if overflow else KEY_FORMATS.get(len(bits))
        if key_of is not None:
            return self._key(key_of(bits))
        decode = None if overflow else FORMATS.get(len(bits))
        cred = decode(bits) if decode is not None else None
        if cred is None:
            self.dropped += 1
            log.debug("wiegand burst dropped: %d bits%s", len(bits),
                      "" if overflow or decode is None else ", bad parity")
            return []
        return [cred]

    def _key(self, key: int | None) -> list[str]:
        if key is None:
            self.dropped += 1
            log.debug("wiegand key burst dropped: not a key")
            return []
        before = self.keypad.dropped
        cred = self.keypad.key(key, self._last)
        self.dropped += self.keypad.dropped - before
        return [] if cred is None else [cred]


class WiegandConfig(ReaderConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``type = "wiegand"``: ``d0_pin`` and ``d1_pin`` (both required), ``holdoff_seconds``,
    ``keypad_timeout_seconds``. A keypad is a wiegand reader too."""

    type_name: ClassVar[str] = "wiegand"

    d0_pin: Pin | None = None
    d1_pin: Pin | None = None
    #: A partial PIN entry on a keypad is dropped after this long without a key.
    keypad_timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = DEFAULT_KEYPAD_TIMEOUT

    def settle(self, *, resolve: Resolve, data_dir: Path) -> Self:
        if self.d0_pin is None or self.d1_pin is None:
            raise ReaderConfigError("d0_pin", "a wiegand reader needs d0_pin and d1_pin")
        return self

    def pins(self) -> dict[str, Pin]:
        return {k: p for k, p in (("d0_pin", self.d0_pin), ("d1_pin", self.d1_pin)) if p is not None}

    def where(self) -> str:
        return f"d0={self.d0_pin} d1={self.d1_pin}"

    def create(self, sink: ReadSink, *, backoff: Backoff | None = None) -> WiegandReader:
        return WiegandReader(self, sink)  # no device to reopen: no backoff


class WiegandReader:
    """A Wiegand reader on ``cfg.d0_pin`` / ``cfg.d1_pin``.

    ``WiegandReader(cfg, sink, *, timeout=0.025, clock=time.monotonic, pin_factory=None)``:
    ``pin_factory`` is a gpiozero pin factory (default: gpiozero's, e.g. MockFactory in
    tests). ``start()`` claims the pins and raises DeviceBusy (a pin in use) or DeviceFailed
    if it cannot. Repeated bursts of the same card with gaps shorter than
    ``cfg.holdoff_seconds`` are one read.
    """

    kind = "wiegand"

    def __init__(self, cfg: WiegandConfig, sink: ReadSink, *, timeout: float = DEFAULT_TIMEOUT,
                 clock: Clock = time.monotonic, pin_factory: Any = None) -> None:
        if cfg.d0_pin is None or cfg.d1_pin is None:
            raise ReaderConfigError("d0_pin", f"reader {cfg.id}: a wiegand reader needs d0_pin and d1_pin")
        self.id = cfg.id
        self.cfg = cfg
        self.sink = sink
        self.stats = ReaderStats()
        self.decoder = WiegandDecoder(timeout, keypad_timeout=cfg.keypad_timeout_seconds)
        self.holdoff = Holdoff(cfg.holdoff_seconds)
        self.clock = clock
        self._factory = pin_factory
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._devices: list[Any] = []

    @property
    def pending(self) -> bool:
        """True while a burst is being received (not yet ended by the timeout)."""
        with self._cond:
            return self.decoder.pending

    def start(self) -> None:
        from gpiozero import DigitalInputDevice
        from gpiozero.exc import GPIOPinInUse, GPIOZeroError

        try:
            for pin, handler in ((self.cfg.d0_pin, self._on_d0), (self.cfg.d1_pin, self._on_d1)):
                dev = DigitalInputDevice(pin, pull_up=True, pin_factory=self._factory)
                dev.when_activated = handler  # pull-up: active means low, i.e. a pulse
                self._devices.append(dev)
        except GPIOZeroError as exc:
            self._close_devices()
            kind = DeviceBusy if isinstance(exc, GPIOPinInUse) else DeviceFailed
            raise kind(f"reader {self.id}: cannot claim pins: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"reader-wiegand-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._close_devices()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _close_devices(self) -> None:
        for dev in self._devices:
            dev.close()
        self._devices = []

    def _on_d0(self) -> None:
        self._bit(0)

    def _on_d1(self) -> None:
        self._bit(1)

    def _bit(self, bit: int) -> None:
        """On gpiozero's callback thread: record the bit; the timer thread ends the burst."""
        with self._cond:
            creds = self._account(self.decoder.feed_bit(bit, self.clock()))
            self._cond.notify_all()
        self._deliver(creds)

    def _account(self, creds: list[str]) -> list[str]:
        """Under the lock: count drops, apply the hold-off (not to PINs: each ``#`` is meant)."""
        dropped = self.decoder.dropped - self.stats.dropped
        if dropped:
            self.stats.add("dropped", dropped)
        now = self.clock()
        return [c for c in creds if c.startswith("pin:") or self.holdoff.admit(c, now)]

    def _deliver(self, creds: list[str]) -> None:
        for cred in creds:
            self.stats.add("reads")
            log.debug("reader %s: read %s", self.id, redact(cred))
            try:
                self.sink.on_credential(self.id, cred)
            except Exception as exc:  # the sink's bug must not kill the timer thread
                log.error("reader %s: sink refused a read: %s", self.id, type(exc).__name__)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                deadline = self.decoder.deadline
                now = self.clock()
                if deadline is None:
                    self._cond.wait(0.5)
                    continue
                if now < deadline:
                    self._cond.wait(deadline - now)
                    continue
                creds = self._account(self.decoder.flush(now))
            self._deliver(creds)
