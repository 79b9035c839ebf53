"""The chaos run's plumbing (testkit.chaos): ``Say``, its timestamped progress lines, and
``Proc``, a child process (the hub, an agent) that the faults SIGKILL and restart, and that
tells a crash (an exit nobody caused) from an exit the run asked for."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from .util import stop_process


class Say:
    """Timestamped progress lines on stdout and in ``chaos.log``."""

    def __init__(self, path: Path, echo: bool = True) -> None:
        self.t0 = time.monotonic()
        self._f = path.open("a", buffering=1)
        self._echo = echo
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        with self._lock:
            self._f.write(line + "\n")
            if self._echo:
                print(line, flush=True)

    def close(self) -> None:
        self._f.close()


class Proc:
    """A subprocess the run starts, kills and restarts; an exit it did not cause is a crash."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name, self.argv, self.log, self.env, self.cwd = name, argv, log, env, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.RLock()
        self.expected_exit = True
        self.starts = self.kills = 0

    def start(self) -> None:
        with self.lock:
            e = dict(os.environ)
            e.update(self.env or {})
            with self.log.open("ab") as f:
                f.write(f"=== chaos: start {self.name} ({time.strftime('%H:%M:%S')}) ===\n".encode())
                f.flush()
                self.proc = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=e, cwd=self.cwd)
            self.expected_exit = False
            self.starts += 1

    def kill(self) -> None:
        """SIGKILL (a power cut); the next start() restarts it."""
        with self.lock:
            self.expected_exit = True
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                self.kills += 1
                with self.log.open("ab") as f:
                    f.write(f"=== chaos: SIGKILL {self.name} ({time.strftime('%H:%M:%S')}) ===\n".encode())

    def stop(self, timeout: float = 20.0) -> int | None:
        with self.lock:
            self.expected_exit = True
            return None if self.proc is None else stop_process(self.proc, timeout)

    @property
    def pid(self) -> int | None:
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def crashed(self) -> int | None:
        """The exit status if the process ended without being told to."""
        with self.lock:
            if self.expected_exit or self.proc is None:
                return None
            return self.proc.poll()
