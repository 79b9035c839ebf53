"""The hub's run lock: a file in the data directory (``hub.run.lock``) that every running
hub process holds shared (``torwart-hub run``; several workers on one machine may run at
once) and that ``torwart-hub migrate-store`` takes exclusively, so a store is never copied
while a hub on this machine writes to it, and no hub starts while it is being copied.
It is an ``flock``: the kernel drops it when its process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HubError

NAME = "hub.run.lock"


class HubRunning(HubError):
    """The lock is held the other way: a hub runs (or a store is being migrated)."""


@contextmanager
def _locked(data_dir: Path, mode: int, busy: str) -> Iterator[Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HubRunning(busy.format(path=path)) from None
        yield path
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def running(data_dir: Path) -> Iterator[Path]:
    """Held by a running hub process; HubRunning while a store migration holds it."""
    with _locked(data_dir, fcntl.LOCK_SH, "the hub's store is being migrated ({path} is locked by "
                                          "torwart-hub migrate-store): start the hub when it has finished") as p:
        yield p


@contextmanager
def exclusive(data_dir: Path) -> Iterator[Path]:
    """Held while a store is migrated; HubRunning while any hub process runs on this data directory."""
    with _locked(data_dir, fcntl.LOCK_EX, "a hub is running on this data directory ({path} is held): "
                                          "stop it first (systemctl stop torwart-hub)") as p:
        yield p
