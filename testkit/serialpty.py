"""A pty pair that pyserial opens like a real UART: the test holds the master end."""

from __future__ import annotations

import os
import select
import termios
import time
import tty


class PtyPort:
    """``path`` is the device a reader opens (e.g. ``/dev/pts/7``); ``write``/``read`` act
    as the far end of the cable (the card reader itself)."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        tty.setraw(self.master, termios.TCSANOW)
        self.path = os.ttyname(self._slave)
        self.closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def read(self, n: int = 4096, timeout: float = 1.0) -> bytes:
        """Read what the device side wrote, waiting up to ``timeout`` for the first byte."""
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return b""
        return os.read(self.master, n)

    def read_exactly(self, n: int, timeout: float = 2.0) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            buf += self.read(n - len(buf), left)
        return buf

    def unplug(self) -> None:
        """Close both ends, as pulling a USB serial adapter does."""
        if not self.closed:
            os.close(self.master)
            os.close(self._slave)
            self.closed = True

    close = unplug

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
