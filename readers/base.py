"""The one interface every card reader backend implements.

A reader runs on its own thread(s). For each presentation of a card (or a PIN entry) it
calls ``sink.on_credential(reader_id, credential_string)`` exactly once, with a credential
string of PROTOCOL.md §1 (``em4100:0A00B1C2D3`` …). It never decides anything. When its
device fails (unplugged, timing out, speaking garbage) it calls ``sink.on_reader_error``
once per failure episode, with a typed ``readers.errors.ReaderError`` (``DeviceNotFound``,
``DeviceBusy``, ``ProtocolError``, …), and keeps trying to reopen the device with backoff,
so the agent keeps serving its other readers. Garbled input is dropped and counted in
``stats``, never delivered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .errors import ReaderError


class ReadSink(Protocol):
    """Where readers deliver. Called on the reader's thread: implementations hand over to a
    queue and return at once."""

    def on_credential(self, reader_id: str, credential: str) -> None: ...

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        """``error``'s class says what failed, ``str(error)`` says it in words."""


class StateSink(Protocol):
    """What a supervised reader (OSDP) also reports, when its sink has it: ``state`` is
    ``"online"``, ``"offline"`` or ``"tamper"`` (PROTOCOL.md §4 ``reader.*`` events).
    Called on the reader's thread, like ``ReadSink``."""

    def on_reader_state(self, reader_id: str, state: str) -> None: ...


class Feedback(Protocol):
    """A reader that shows the decision itself (OSDP: its LED and buzzer).
    ``feedback(granted)`` queues the command and returns at once."""

    def feedback(self, granted: bool) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Delay before reopening a failed device: ``start``, times ``factor`` per failed
    attempt, capped at ``maximum``. Tests pass small values."""

    start: float = 0.2
    factor: float = 2.0
    maximum: float = 30.0

    def delays(self) -> Iterator[float]:
        """A fresh, endless delay sequence."""
        d = self.start
        while True:
            yield d
            d = min(d * self.factor, self.maximum)



@dataclass
class ReaderStats:
    """Counters a reader keeps (shown by ``torwart-edge status`` and the benchmarks)."""

    reads: int = 0
    dropped: int = 0
    errors: int = 0
    reopens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Reader(Protocol):
    id: str
    stats: ReaderStats

    def start(self) -> None:
        """Start the reader's thread(s); returns at once."""

    def stop(self) -> None:
        """Stop and join the reader's thread(s) within about a second; release the device."""
