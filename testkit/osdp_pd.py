"""OSDP readers for tests: libosdp's own ``PeripheralDevice`` (code Torwart did not write)
on the far end of a pty, as an RS-485 bus.

``PdBus`` owns the pty: its slave path is the ``port`` the control panel opens, its master
end is the bus seen from the readers' side. A thread copies every byte the control panel
sends to each device's inbox (RS-485 is a shared line: every device hears every frame and
answers only its own address); what a device sends is written to the master end.
``inject(raw)`` puts arbitrary bytes on the bus toward the control panel (fuzzing).

``Pd`` is one device: ``card(nbits, data)``, ``keys(b"1234#")``, ``tamper()``; ``stop()``
makes it fall silent (power off), ``start()`` brings a fresh one up at the same address
with the same key (power on). ``commands`` collects the commands the device received
(LED, buzzer, keyset) as libosdp hands them over.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import tty
from typing import Any

from osdp import (
    Capability,
    CardFormat,
    Channel,
    Event,
    LibFlag,
    LogLevel,
    PDCapabilities,
    PDInfo,
    PeripheralDevice,
    StatusReportType,
)

CAPS = [(Capability.CommunicationSecurity, 1, 1), (Capability.LEDControl, 1, 1),
        (Capability.AudibleControl, 1, 1), (Capability.CardDataFormat, 1, 1)]


class _PdChannel(Channel):  # type: ignore[misc]  # libosdp ships no types
    def __init__(self, bus: PdBus) -> None:
        super().__init__()
        self.bus = bus
        self.inbox = bytearray()
        self.lock = threading.Lock()

    def read(self, max_bytes: int) -> bytes:
        with self.lock:
            data = bytes(self.inbox[:max_bytes])
            del self.inbox[:max_bytes]
        return data

    def write(self, buf: bytes) -> int:
        tap = self.bus.tap
        if tap is not None:
            tap.append(bytes(buf))
        return self.bus.inject(buf)

    def flush(self) -> None:
        pass


class Pd:
    """One libosdp peripheral device at ``address`` on ``bus``."""

    def __init__(self, bus: PdBus, address: int, scbk: bytes | None, *, install_mode: bool = False) -> None:
        self.bus = bus
        self.address = address
        self.scbk = scbk
        self.install_mode = install_mode
        self.commands: list[dict[str, Any]] = []
        self.channel: _PdChannel | None = None
        self.dev: PeripheralDevice | None = None

    def _on_command(self, cmd: dict[str, Any]) -> tuple[int, None]:
        self.commands.append(cmd)
        return 0, None

    def start(self) -> None:
        self.channel = _PdChannel(self.bus)
        flags = [LibFlag.InstallMode] if self.install_mode else []
        info = PDInfo(self.address, self.channel, scbk=self.scbk, flags=flags)
        self.dev = PeripheralDevice(info, PDCapabilities(CAPS), log_level=LogLevel.Emergency,
                                    command_handler=self._on_command)
        self.bus.channels.append(self.channel)
        self.dev.start()

    def stop(self) -> None:
        if self.dev is not None:
            self.dev.stop()
            self.dev = None
        if self.channel in self.bus.channels:
            self.bus.channels.remove(self.channel)

    @property
    def secure(self) -> bool:
        return self.dev is not None and bool(self.dev.is_sc_active())

    def _submit(self, event: dict[str, Any]) -> None:
        assert self.dev is not None
        self.dev.submit_event(event)

    def card(self, nbits: int, data: bytes) -> None:
        """Report a raw Wiegand card read: ``nbits`` bits, left-aligned in ``data``."""
        self._submit({"event": Event.CardRead, "reader_no": 0, "format": CardFormat.Wiegand,
                      "direction": 0, "length": nbits, "data": data})

    def keys(self, data: bytes) -> None:
        self._submit({"event": Event.KeyPress, "reader_no": 0, "data": data})

    def tamper(self, on: bool = True) -> None:
        self._submit({"event": Event.Status, "type": StatusReportType.Local, "report": bytes([int(on), 0])})


class PdBus:
    """A pty standing in for an RS-485 bus; ``port`` is the control panel's end."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        fl = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.channels: list[_PdChannel] = []
        self.pds: list[Pd] = []
        self.to_cp = 0
        #: When a list: every chunk the devices send is also appended to it (tests capture frames).
        self.tap: list[bytes] | None = None
        self._wlock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="pd-bus", daemon=True)
        self._thread.start()

    def add(self, address: int, scbk: bytes | None, *, install_mode: bool = False, start: bool = True) -> Pd:
        pd = Pd(self, address, scbk, install_mode=install_mode)
        self.pds.append(pd)
        if start:
            pd.start()
        return pd

    def inject(self, raw: bytes) -> int:
        """Write ``raw`` onto the bus toward the control panel."""
        with self._wlock:
            try:
                n = os.write(self.master, raw)
            except BlockingIOError:
                return 0
        self.to_cp += n
        return n

    def _pump(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                continue
            for ch in list(self.channels):
                with ch.lock:
                    ch.inbox.extend(data)

    def close(self) -> None:
        for pd in self.pds:
            pd.stop()
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)


def wiegand_frame(nbits: int, data: int) -> bytes:
    """``data`` (the bits without parity) with Wiegand parity, left-aligned in whole bytes:
    what a card reader reports in an OSDP raw card read."""
    n = nbits - 2
    bits = [(data >> (n - 1 - i)) & 1 for i in range(n)]
    full = [sum(bits[: n // 2]) % 2, *bits, 1 - sum(bits[n // 2:]) % 2]
    return left_aligned(full)


def left_aligned(bits: list[int]) -> bytes:
    nbytes = (len(bits) + 7) // 8
    value = 0
    for b in bits:
        value = (value << 1) | b
    return (value << (8 * nbytes - len(bits))).to_bytes(nbytes, "big")
