"""RDM6300 frames and a fake module that repeats them while a card is in the field.

``rdm6300_frame`` is written independently of ``readers.rdm6300`` on purpose.
"""

from __future__ import annotations

import os
import select
import threading
from functools import reduce

from .serialpty import PtyPort


def rdm6300_frame(card_hex10: str, *, lower: bool = False) -> bytes:
    """The 14-byte frame of a card: STX, 10 hex digits, XOR checksum digits, ETX."""
    if len(card_hex10) != 10:
        raise ValueError("an EM4100 card id is 10 hex digits")
    data = bytes.fromhex(card_hex10)
    check = reduce(lambda a, b: a ^ b, data)
    text = (card_hex10 + f"{check:02X}").upper()
    return b"\x02" + (text.lower() if lower else text).encode("ascii") + b"\x03"


class FakeRdm6300:
    """Writes the present card's frame every ``interval`` seconds into ``port`` (a
    PtyPort it makes if not given), like the module does while a card is in the field.

    ``present(card_hex10)``, ``remove()``, ``write(raw)`` (anything, e.g. garbage),
    ``frames_sent``; ``stop()``; ``unplug()`` also closes the pty.
    """

    def __init__(self, port: PtyPort | None = None, *, interval: float = 0.05) -> None:
        self.port = port or PtyPort()
        self.path = self.port.path
        self.interval = interval
        self.frames_sent = 0
        self._frame: bytes | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-rdm6300", daemon=True)
        self._thread.start()

    def present(self, card_hex10: str) -> None:
        with self._lock:
            self._frame = rdm6300_frame(card_hex10)
        self._wake.set()

    def remove(self) -> None:
        with self._lock:
            self._frame = None

    def write(self, raw: bytes) -> None:
        """Put raw bytes on the line (between repeats, never inside one)."""
        with self._lock:
            self._write(raw)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def unplug(self) -> None:
        self.stop()
        self.port.unplug()

    def __enter__(self) -> FakeRdm6300:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unplug()

    def _write(self, data: bytes) -> bool:
        try:
            view = memoryview(data)
            while view:
                _, w, _ = select.select([], [self.port.master], [], 0.2)
                if not w:
                    return False  # nobody reads: like a UART, drop rather than block
                view = view[os.write(self.port.master, view):]
        except (OSError, ValueError):
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                frame = self._frame
                if frame is not None and self._write(frame):
                    self.frames_sent += 1
            if frame is None:
                self._wake.wait(0.5)
                self._wake.clear()
            else:
                self._stop.wait(self.interval)
