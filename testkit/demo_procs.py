"""Child processes of the demo: each in its own session (so a Ctrl-C at the terminal
reaches the demo alone, which then stops them in order), stopped by process group, and
told by the kernel to terminate if the demo itself dies without cleaning up (Linux
``PR_SET_PDEATHSIG``), so that nothing is ever left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .broker import Mosquitto, mosquitto_binary
from .util import log_tail, port_open, wait_for

PR_SET_PDEATHSIG = 1

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # not Linux: children are still stopped by the demo's finally blocks
    _libc = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: SIGTERM this child when the demo dies (also if it already has)."""
    libc = _libc  # looked up before fork: the child only makes one system call

    def preexec() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Child:
    """One child process, its log file, and how to stop it."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 (one syscall)
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise if the child has exited (with the end of its log)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}; its log ends:\n"
                               f"{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the child's process group, wait, then SIGKILL what is left; the exit status."""
        if self.proc is None:
            return None
        pgid = self.proc.pid  # its own session: the group id is its pid
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < deadline:
            _signal_group(pgid, signal.SIGKILL)  # grandchildren the child left behind
            time.sleep(0.05)
        return self.proc.returncode

    def log_tail(self, n: int = 30) -> str:
        return log_tail(self.log_path, n)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class DemoBroker(Mosquitto):
    """``testkit.broker.Mosquitto`` started as a ``Child``: its own session, dies with the demo."""

    child: Child | None = None

    def start(self, timeout: float = 10.0) -> DemoBroker:
        if self.running:
            return self
        conf = self._write_config()
        self.child = Child("mosquitto", [mosquitto_binary(), "-c", str(conf)], self.log_path).start()
        self.proc = self.child.proc
        self.starts += 1

        def ready() -> bool:
            assert self.child is not None
            self.child.check()
            return port_open(self.host, self.port) and port_open(self.host, self.hub_port)

        wait_for(ready, timeout, what=f"mosquitto on port {self.port}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.child is not None:
            self.child.stop(timeout)
        self.proc = None


def fifo_write(path: Path, line: str, timeout: float = 10.0) -> None:
    """Write one line into the FIFO at ``path``, waiting (up to ``timeout``) for it to exist
    and to have a reader; never blocks for ever on a FIFO whose reader is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENXIO) or time.monotonic() > deadline:
                raise TimeoutError(f"nobody reads {path} ({exc.strerror})") from None
            time.sleep(0.02)
            continue
        try:
            os.write(fd, line.encode("utf-8") + b"\n")
        finally:
            os.close(fd)
        return
