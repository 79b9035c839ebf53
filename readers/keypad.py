"""PIN entry on a Wiegand keypad: key bursts in, ``pin:DIGITS`` credentials out.

Keypads speak Wiegand too, one burst per key press, in one of two formats:

- **4-bit**: the key's value, most significant bit first;
- **8-bit**: the key's complement in the upper four bits, the key in the lower four
  (``1`` is ``1110 0001``), as HID-style keypads send it; a burst whose halves are not
  complements of each other is dropped.

Key values: 0–9 are digits, 10 is ``*`` and 11 is ``#``; 12–15 are dropped. Digits are
collected until ``#`` delivers them as ``pin:DIGITS`` (PROTOCOL.md §1) when there are 4 to
12 of them (otherwise the entry is dropped and counted); ``*`` clears the entry; a key
that comes more than ``timeout`` seconds after the previous one starts a new entry (the
partial one is dropped: a passer-by's stray key press must not become the first digit of
the next person's PIN).

``PinEntry`` is pure: the time of each key is passed in. It never logs a digit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from wire.creds import pin

log = logging.getLogger(__name__)

STAR = 10
HASH = 11
MIN_DIGITS = 4
MAX_DIGITS = 12
DEFAULT_KEYPAD_TIMEOUT = 5.0


def _value(bits: list[int]) -> int:
    v = 0
    for b in bits:
        v = (v << 1) | (1 if b else 0)
    return v


def key_4(bits: list[int]) -> int | None:
    """The key of a 4-bit burst, or None for a value that is no key (12–15)."""
    v = _value(bits)
    return v if v <= HASH else None


def key_8(bits: list[int]) -> int | None:
    """The key of an 8-bit burst (complement nibble, then key nibble), or None."""
    v = _value(bits)
    high, low = v >> 4, v & 0xF
    if high != low ^ 0xF or low > HASH:
        return None
    return low


#: Burst length → key decoder (None: not a key).
KEY_FORMATS: dict[int, Callable[[list[int]], int | None]] = {4: key_4, 8: key_8}


class PinEntry:
    """Assembles key presses into PIN credentials.

    ``key(k, t)`` takes one key (0–11) pressed at time ``t`` (seconds, monotonic) and
    returns the credential string when ``k`` is ``#`` completing a valid entry, else None.
    Counters: ``entries`` (PINs delivered), ``dropped`` (``#`` after too few or too many
    digits), ``cleared`` (``*`` pressed), ``timeouts`` (partial entries abandoned).
    """

    def __init__(self, timeout: float = DEFAULT_KEYPAD_TIMEOUT, *, min_digits: int = MIN_DIGITS,
                 max_digits: int = MAX_DIGITS) -> None:
        self.timeout = timeout
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.entries = 0
        self.dropped = 0
        self.cleared = 0
        self.timeouts = 0
        self._digits: list[str] = []
        self._overlong = False
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        """True while a partial entry is held."""
        return bool(self._digits) or self._overlong

    def expire(self, t: float) -> bool:
        """Drop a partial entry whose last key is older than ``timeout``; True if dropped."""
        if self.pending and self._last is not None and t - self._last > self.timeout:
            self.timeouts += 1
            self._reset()
            log.debug("keypad entry timed out")
            return True
        return False

    def key(self, k: int, t: float) -> str | None:
        self.expire(t)
        self._last = t
        if k == STAR:
            if self.pending:
                self.cleared += 1
            self._reset()
            return None
        if k == HASH:
            digits, overlong = "".join(self._digits), self._overlong
            self._reset()
            if overlong or not self.min_digits <= len(digits) <= self.max_digits:
                self.dropped += 1
                log.debug("keypad entry dropped: %s", "too long" if overlong else f"{len(digits)} digits")
                return None
            self.entries += 1
            return pin(digits)
        if 0 <= k <= 9:
            if len(self._digits) < self.max_digits:
                self._digits.append(str(k))
            else:
                self._overlong = True
        return None

    def _reset(self) -> None:
        self._digits = []
        self._overlong = False
