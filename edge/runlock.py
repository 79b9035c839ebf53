"""One owner of a site's pins and data at a time: an flock on ``DATA_DIR/torwart.lock``.

The agent takes it before it claims a pin and holds it until it stops; the bring-up
commands (``torwart-edge doors test``, ``readers watch``) take the same lock, so neither
can drive a relay or read a reader behind the other's back. The kernel drops an flock
when its process dies, so a crash never leaves a stale lock. The file holds the owner's
pid and what it is, for the message the next comer gets.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from .errors import EdgeError

log = logging.getLogger(__name__)

LOCK_NAME = "torwart.lock"


class DataDirBusy(EdgeError):
    """Another process (the agent or a bring-up command) holds the site's data directory."""


class RunLock:
    """``RunLock.acquire(data_dir, what)`` or DataDirBusy; ``release()`` (idempotent) lets go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path, what: str) -> RunLock:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            finally:
                os.close(fd)
            raise DataDirBusy(
                f"{data_dir} is in use by {holder}: only one of the agent and the bring-up commands "
                f"may drive this site's pins at a time. Stop it first (the agent: "
                f"sudo systemctl stop torwart-edge; a bring-up command: Ctrl-C)") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()})\n".encode(), 0)
        log.debug("%s holds %s", what, path)
        return cls(fd, path)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock
