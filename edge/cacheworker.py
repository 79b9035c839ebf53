"""The cache worker thread: cache envelopes are verified and applied here, with the
worker's own connection to the cache database, so that badges are still decided on the
main loop (from the old cache, thanks to WAL) while a large cache is applied.

It touches only its own connection and what ``apply`` needs (immutable config); the
outcome goes back to the main loop through ``done``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from wire.topics import Kind

from . import malloc
from .cache import CacheStore

log = logging.getLogger(__name__)

#: Verify and apply one envelope (held in the list, see CommandHandler.apply_cache) to the
#: store; return (version, error code or None).
Apply = Callable[[CacheStore, Kind, list[bytes]], tuple[int | None, str | None]]
#: Called on the worker thread with (version, error code or None): hand over and return.
Done = Callable[[int | None, str | None], None]


class CacheWorker:
    def __init__(self, path: Path, apply: Apply, done: Done) -> None:
        self._path = path
        self._apply = apply
        self._done = done
        self._q: queue.Queue[tuple[Kind, list[bytes]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="cache-apply", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, kind: Kind, payload: bytes) -> None:
        """Queue a full cache or a delta (from paho's thread); the queue holds the only reference."""
        self._q.put((kind, [payload]))

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish what it is applying, then end it (waits up to ``timeout``)."""
        self._q.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        store = CacheStore(self._path)
        try:
            while True:
                item = self._q.get()
                if item is None:
                    return
                kind, held = item
                del item  # ``held`` is now the envelope's only holder (see apply_cache)
                version, error = self._apply(store, kind, held)
                if kind is Kind.CACHE:
                    malloc.trim()  # a full cache's buffers are gone now: give their memory back
                self._done(version, error)
        finally:
            store.close()
