"""A simulated reader for the demo and manual tests: credential strings through a FIFO.

Write one credential string per line into the FIFO at ``cfg.path``, e.g.
``echo em4100:0A00B1C2D3 > data/sim-front``. Each valid line is one presentation and
one read: there is no field a card could stay in, so no hold-off (a demo or a test
badging the same card twice, e.g. to check out of a toggle room, gets two reads). A
line that is not a PROTOCOL.md §1 credential string is dropped and counted, never
delivered.
"""

from __future__ import annotations

import logging
import os
import select
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import msgspec

from wire.creds import check_credential
from wire.errors import WireError

from .base import Backoff, ReadSink
from .config import ReaderConfig, Resolve
from .errors import ReaderConfigError, WrongDevice
from .serialbase import DeviceReader

log = logging.getLogger(__name__)

#: A line longer than this is not a credential; it is dropped without being buffered whole.
MAX_LINE = 256


@dataclass
class _Fifo:
    fd: int  # replaced on every EOF, see _session


class SimConfig(ReaderConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``type = "sim"``: ``path`` of the FIFO (default: ``sim-ID`` in the site's data directory)."""

    type_name: ClassVar[str] = "sim"

    #: The FIFO (or Unix socket) that credential strings are written to.
    path: str | None = None

    def settle(self, *, resolve: Resolve, data_dir: Path) -> Self:
        return msgspec.structs.replace(self, path=resolve(self.path) if self.path else str(data_dir / f"sim-{self.id}"))

    def where(self) -> str:
        return self.path or "-"

    def create(self, sink: ReadSink, *, backoff: Backoff | None = None) -> SimReader:
        return SimReader(self, sink, backoff=backoff)


class SimReader(DeviceReader[_Fifo]):
    """Reads credential strings from the FIFO at ``cfg.path`` (created, mode 0600, if missing).

    ``SimReader(cfg, sink, *, backoff=None)``. Successive writers work (each ``echo``
    opens, writes, closes). Lines end with a newline; an unterminated last line ends when
    the FIFO has no writer left (a FIFO cannot tell writers apart, so a writer that
    follows at once may still continue that line).
    ``lines`` counts the non-empty lines taken in (valid or not), ``stats.dropped`` the
    invalid ones. If ``cfg.path`` exists but is not a FIFO, that is a WrongDevice error
    (reported once, retried with backoff).
    """

    kind = "sim"
    poll_timeout = 0.1

    def __init__(self, cfg: SimConfig, sink: ReadSink, *, backoff: Backoff | None = None) -> None:
        if not cfg.path:
            raise ReaderConfigError("path", f"reader {cfg.id}: a sim reader needs a path")
        super().__init__(cfg, sink, backoff=backoff)
        self.path = cfg.path
        self.lines = 0
        self._partial = bytearray()
        self._overlong = False

    def _open(self) -> _Fifo:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            os.mkfifo(self.path, 0o600)
            log.info("reader %s: created FIFO %s", self.id, self.path)
        else:
            if not stat.S_ISFIFO(st.st_mode):
                raise WrongDevice(f"{self.path} exists and is not a FIFO")
        self._partial.clear()
        self._overlong = False
        return _Fifo(self._open_fd())

    def _open_fd(self) -> int:
        # Non-blocking: opening a FIFO for reading must not wait for a writer (stop()).
        return os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def _close(self, dev: _Fifo) -> None:
        os.close(dev.fd)

    def _session(self, dev: _Fifo) -> None:
        self._healthy()
        poller = select.poll()
        poller.register(dev.fd, select.POLLIN)
        idle_eof = False  # an EOF with no data since the last one
        while not self._stop.is_set():
            if not poller.poll(int(self.poll_timeout * 1000)):
                continue
            try:
                data = os.read(dev.fd, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            if data:
                idle_eof = False
                self._take(data)
                continue
            if idle_eof:  # never spin, should a kernel report POLLHUP on a fresh descriptor
                self._stop.wait(self.poll_timeout)
            idle_eof = True
            # EOF: the last writer closed. Its unterminated last line ends here. Reopen:
            # a FIFO that has seen its writers leave reports POLLHUP for ever, but a fresh
            # descriptor does not until a new writer comes and goes (Linux). The new one is
            # opened before the old one is closed, so the pipe, and whatever a next writer
            # already put into it, stays alive in between.
            self._line_end()
            fresh = self._open_fd()
            poller.unregister(dev.fd)
            os.close(dev.fd)
            dev.fd = fresh
            poller.register(dev.fd, select.POLLIN)

    def _take(self, data: bytes) -> None:
        *complete, rest = data.split(b"\n")
        for piece in complete:
            self._partial += piece
            self._line_end()
        if len(self._partial) + len(rest) > MAX_LINE:
            self._overlong = True
            self._partial.clear()
        else:
            self._partial += rest

    def _line_end(self) -> None:
        raw, overlong = bytes(self._partial), self._overlong
        self._partial.clear()
        self._overlong = False
        if overlong:
            self._drop("line too long")
            return
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._drop("not UTF-8")
            return
        if not line:
            return
        try:
            cred = check_credential(line)
        except WireError:
            self._drop("not a credential string")
            return
        self.lines += 1
        self._emit(cred)

    def _drop(self, reason: str) -> None:
        self.lines += 1
        self.stats.add("dropped")
        log.debug("reader %s: line dropped: %s", self.id, reason)
