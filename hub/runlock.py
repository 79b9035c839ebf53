"""The running hub's mark on its data directory: a shared flock on ``DATA_DIR/hub.run.lock``.

Every ``torwart-hub run`` process holds it shared while it runs (several may share a data
directory); ``torwart-hub restore`` and ``torwart-hub migrate-store`` take it exclusively,
so they refuse while any hub runs, and no hub starts while they replace or copy the store. The kernel drops an flock
when its process dies: a crashed hub leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HubError

LOCK_NAME = "hub.run.lock"


class HubBusy(HubError):
    """The data directory is held: a hub runs (for a restore or migration), or a restore or
    migration runs (for a hub)."""


HubRunning = HubBusy


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
                raise HubBusy(f"a hub is running on {data_dir}: stop it first "
                              "(sudo systemctl stop torwart-hub)") from None
            raise HubBusy(f"the hub's state in {data_dir} is being restored or migrated (torwart-hub restore / "
                          "migrate-store): start the hub when it has finished") from None
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@contextmanager
def running(data_dir: Path) -> Iterator[None]:
    """Held shared, as by a running hub, for the ``with`` block."""
    lock = RunLock.acquire(data_dir, exclusive=False)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Held exclusively, as by a restore or a store migration, for the ``with`` block."""
    lock = RunLock.acquire(data_dir, exclusive=True)
    try:
        yield
    finally:
        lock.release()
