"""The demo's handle on one simulated site: present a credential at a reader, move a door,
press an exit button, and wait for what the site decided and recorded.

Waits read the site's own databases read-only, as ``torwart-edge status`` does: the
outbox (every event, numbered by ``seq``) and the applied cache. A wait names the
condition it needs and gives up with a TimeoutError after its timeout; nothing here
relies on a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.cache import CacheStore
from edge.errors import StorageError
from edge.outbox import Outbox
from wire.creds import cred_hash
from wire.keys import read_key_file

from .demo_procs import Child, fifo_write
from .site import SiteFiles

Event = dict[str, Any]
POLL = 0.02


@dataclass
class SiteView:
    id: str
    name: str
    files: SiteFiles
    control: Path
    child: Child | None = None

    def __post_init__(self) -> None:
        self._key = read_key_file(self.files.dir / "cred.key")
        self._outbox: Outbox | None = None
        self._cache: CacheStore | None = None

    # --- the site's databases, read-only --------------------------------------------------

    def _ob(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.files.data_dir / "outbox.db", self.id, "demo", read_only=True)
        return self._outbox

    def _cs(self) -> CacheStore:
        if self._cache is None:
            self._cache = CacheStore(self.files.data_dir / "cache.db", read_only=True)
        return self._cache

    def ready(self) -> bool:
        """The agent has created its databases (they can be opened read-only)."""
        data = self.files.data_dir
        return (data / "outbox.db").exists() and (data / "cache.db").exists()

    def close(self) -> None:
        for db in (self._outbox, self._cache):
            if db is not None:
                db.close()
        self._outbox = self._cache = None

    def last_seq(self) -> int:
        return self._ob().last_seq

    def all_acked(self) -> bool:
        """The hub has acknowledged every event the site emitted so far."""
        ob = self._ob()
        return ob.acked_upto >= ob.last_seq

    def cache_version(self) -> int | None:
        return self._cs().meta().version

    def cache_entries(self) -> int:
        return self._cs().meta().entry_count

    def refs_for(self, credential: str) -> set[str | None]:
        """The booking refs (None: a standing grant) the site's cache holds for ``credential``."""
        return {e.ref for e in self._cs().lookup(cred_hash(self._key, credential))}

    def events_after(self, seq: int, n: int = 100) -> list[Event]:
        """Events with seq > ``seq``, oldest first (of the newest ``n``)."""
        try:
            recent = self._ob().recent(n)
        except StorageError:
            return []
        return sorted((e for e in recent if e["seq"] > seq), key=lambda e: e["seq"])

    # --- acting -----------------------------------------------------------------------------

    def badge(self, reader: str, credential: str) -> None:
        fifo_write(self.files.sim_path(reader), credential)

    def act(self, line: str) -> None:
        """A control line for the simsite: ``open DOOR``, ``close DOOR``, ``exit DOOR``."""
        fifo_write(self.control, line)

    # --- waiting ------------------------------------------------------------------------------

    def wait_event(self, after: int, match: Callable[[Event], bool], timeout: float, what: str) -> Event:
        """The first event after seq ``after`` that ``match``es; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events_after(after):
                if match(e):
                    return e
            if self.child is not None:
                self.child.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {what} within {timeout:.0f} s")
            time.sleep(POLL)

    def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``cond`` until true; how long it took. TimeoutError after ``timeout``."""
        t0 = time.monotonic()
        while not cond():
            if self.child is not None:
                self.child.check()
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{self.name}: {what} not reached within {timeout:.0f} s")
            time.sleep(POLL)
        return time.monotonic() - t0
