"""The running hub's mark on its data directory: a shared flock on ``DATA_DIR/hub.run.lock``.

Every ``torwart-hub run`` process holds it shared while it runs (several may share a data
directory); ``torwart-hub restore`` takes it exclusively, so it refuses while any hub runs,
and no hub starts while a restore replaces the store under it. The kernel drops an flock
when its process dies: a crashed hub leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import HubError

LOCK_NAME = "hub.run.lock"


class HubBusy(HubError):
    """The data directory is held: a hub runs (for a restore), or a restore runs (for a hub)."""


class RunLock:
    """``RunLock.acquire(data_dir, exclusive=...)`` or HubBusy; ``release()`` lets go."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, *, exclusive: bool) -> RunLock:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if exclusive:
                raise HubBusy(f"the hub is running on {data_dir}: stop it first "
                              "(sudo systemctl stop torwart-hub)") from None
            raise HubBusy(f"a restore is replacing the hub's state in {data_dir}; start the hub when it "
                          "has finished") from None
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
