"""Fault injection for the edge store tests: children to SIGKILL, and a small file system
to fill up.

Children (the parent kills them):

    python -m tests.edge._faults cache DB BODY_JSON VERSION [CONFIG_KEY]
        applies the cache.full in BODY_JSON (with its version set to VERSION) to DB (with
        CONFIG_KEY as the site's configured hub key, see CacheStore.trusted_keys);
        prints "applying" just before apply() and "done COUNT SECONDS" after it returns.
    python -m tests.edge._faults outbox DB
        prints "start LAST_SEQ", then emits events forever, printing each seq only
        after emit() has returned (i.e. after the commit).

The parent side is ``Child``: spawn, read lines with a timeout (no sleeps), SIGKILL.
``small_tmpfs`` mounts a tiny tmpfs (root only) and ``fill`` fills it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec

from edge.cache import CacheStore
from edge.outbox import Outbox
from wire.messages import CacheFull

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """A child process of this module whose stdout is read line by line with timeouts."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.edge._faults", *args],
            cwd=ROOT, stdout=subprocess.PIPE, bufsize=0,
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self._eof = False

    def readline(self, timeout: float = 30.0) -> str | None:
        """The next line, or None at end of output; TimeoutError if none comes in time."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                if self._eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"no line from the child within {timeout} s")
                chunk = os.read(self._fd, 65536)
                if chunk:
                    self._buf += chunk
                else:
                    self._eof = True
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def rest(self, timeout: float = 30.0) -> list[str]:
        """All remaining lines until the child's stdout closes."""
        lines = []
        while (line := self.readline(timeout)) is not None:
            lines.append(line)
        return lines

    def kill_after(self, delay: float) -> bool:
        """Wait up to ``delay`` seconds for the child to exit by itself, else SIGKILL it.
        Returns True if it was killed."""
        try:
            self.proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            return self.proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextlib.contextmanager
def small_tmpfs(mnt: Path, size: str = "2m") -> Iterator[Path | str]:
    """Mount a tmpfs of ``size`` on ``mnt``; yields the path, or the reason it could not."""
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        yield f"cannot mount a small tmpfs to fill up (mount: {r.stderr.strip() or r.returncode})"
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (65536, 512):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def cache_main(db: str, body_file: str, version: str, config_key: str | None = None) -> None:
    body = msgspec.json.decode(Path(body_file).read_bytes(), type=CacheFull)
    body = msgspec.structs.replace(body, version=int(version))
    store = CacheStore(Path(db))
    print("applying", flush=True)
    t0 = time.perf_counter()
    n = store.apply(body, config_key=config_key)
    print(f"done {n} {time.perf_counter() - t0:.4f}", flush=True)
    store.close()


def outbox_main(db: str) -> None:
    ob = Outbox(Path(db), "site-a", uuid.uuid4().hex)
    print(f"start {ob.last_seq}", flush=True)
    while True:
        data = ob.emit("door.opened", ts=time.time(), clock_synced=True, door="front")
        seq = msgspec.json.decode(data)["seq"]
        print(seq, flush=True)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "cache":
        cache_main(*args)
    elif cmd == "outbox":
        outbox_main(*args)
    else:
        sys.exit(f"unknown command {cmd!r}")
