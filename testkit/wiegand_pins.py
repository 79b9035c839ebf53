"""Wiegand bursts driven on gpiozero MockFactory pins from a test thread.

A real reader sends a 26-bit card in about 50 ms; a Python test thread drives the same
pulses as fast as it can, but on a loaded machine it may be descheduled between two bits
for longer than the 25 ms gap that ends a burst, which would cut one card (or one key)
into two broken bursts. ``drive_bits`` therefore runs the reader on a ``BurstClock``:
time stands still while a burst is driven and runs with real time otherwise, so the end
of a burst, key timeouts and the hold-off are timed as in the field.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from readers.wiegand import WiegandReader

from .util import wait_for


class BurstClock:
    """``time.monotonic`` with the time spent inside ``still()`` taken out. It starts equal
    to ``time.monotonic()``, so it may replace a running reader's clock."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen: float | None = None

    def __call__(self) -> float:
        frozen = self._frozen
        return frozen if frozen is not None else time.monotonic() - self._offset

    @contextmanager
    def still(self) -> Iterator[None]:
        start = time.monotonic()
        self._frozen = start - self._offset
        try:
            yield
        finally:
            self._offset += time.monotonic() - start
            self._frozen = None


def burst_clock(reader: WiegandReader) -> BurstClock:
    """The reader's ``BurstClock``, put in place on first use."""
    if not isinstance(reader.clock, BurstClock):
        reader.clock = BurstClock()
    assert isinstance(reader.clock, BurstClock)
    return reader.clock


def drive_bits(factory: Any, reader: WiegandReader, bits: Iterable[int]) -> None:
    """Pulse ``bits`` on the reader's D0/D1 mock pins as one burst, after the previous
    burst has ended (bursts never merge)."""
    clock = burst_clock(reader)
    wait_for(lambda: not reader.pending, 5, what="the previous Wiegand burst to end")
    d0, d1 = factory.pin(reader.cfg.d0_pin), factory.pin(reader.cfg.d1_pin)
    with clock.still():
        for b in bits:
            pin = d1 if b else d0
            pin.drive_low()
            pin.drive_high()
