"""A short conversation of the hub's command line with a site over the broker: a connection
of its own (not the running hub's persistent session), subscribed to some of the site's
topics, and an inbox that the waiting thread reads with a deadline.

The command line's acts that wait for a site (push a cache, send a command, enroll a card
there: ``hub.core``) talk through one; they work whether or not ``torwart-hub run`` is
running, since both use the same store.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from .config import HubConfig
from .errors import HubError
from .link import HubLink

T = TypeVar("T")
#: A message of a site: (site, kind, payload).
Msg = tuple[str, Kind, bytes]


class Conversation:
    """One short-lived connection and its inbox; a context manager that disconnects.

    ``name`` goes into the MQTT client id (``{client_id}-{name}-{random}``), so that the
    broker's log tells the command line's connections from the running hub's."""

    def __init__(self, cfg: HubConfig, name: str) -> None:
        self.cfg = cfg
        self._q: queue.Queue[Msg] = queue.Queue()
        #: Messages taken from the inbox and handed back for a later read (read first).
        self.held: list[Msg] = []
        self.link = HubLink(cfg.mqtt, self, client_id=f"{cfg.mqtt.client_id}-{name}-{uuid.uuid4().hex[:8]}",
                            persistent=False, subscribe=())

    # --- HubLink's handler (paho's thread) -----------------------------------------------------------

    def link_up(self) -> None:
        """Nothing to do on (re)connect: this short-lived conversation only waits for replies."""

    def site_message(self, site: str, kind: Kind, door: str | None, payload: bytes) -> None:
        self._q.put((site, kind, payload))

    # --- the waiting thread ------------------------------------------------------------------------

    def connect(self, timeout: float) -> None:
        """Connect within ``timeout`` seconds; HubError naming the broker (and its refusal) if not."""
        self.link.start()
        if not self.link.wait_connected(timeout):
            mq = self.cfg.mqtt
            raise HubError(f"cannot reach the broker at {mq.host}:{mq.effective_port}"
                           + (f" ({self.link.refusal})" if self.link.refusal else ""))

    def listen(self, site: str, kinds: Iterable[Kind]) -> None:
        """Subscribe to ``site``'s topics of ``kinds`` (after ``connect``)."""
        self.link.subscribe_site(site, tuple(kinds))

    def next(self, deadline: float) -> Msg | None:
        """The next message (a held one first), or None when none came within half a
        second or by ``deadline`` (monotonic)."""
        if self.held:
            return self.held.pop(0)
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return self._q.get(timeout=min(left, 0.5))
        except queue.Empty:
            return None

    def wait(self, kind: Kind, type_: type[T], match: Callable[[T], bool], deadline: float, *,
             site: str | None = None) -> T | None:
        """The first message of ``kind`` (from ``site``, if given) that decodes as ``type_``
        and satisfies ``match``, or None at ``deadline`` (monotonic); the messages passed
        over are dropped."""
        while time.monotonic() < deadline:
            msg = self.next(deadline)
            if msg is None or msg[1] is not kind or (site is not None and msg[0] != site):
                continue
            try:
                got: T = m.decode(msg[2], type_)
            except WireError:
                continue
            if match(got):
                return got
        return None

    def close(self) -> None:
        self.link.stop()

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
