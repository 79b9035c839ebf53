"""``Hub``: the one object whose methods are the hub's acts, and ``open_hub``, the command
line's way to get one.

The service loop (``hub.service``), the command line (``hub.cli``) and the dashboard
(``hub.dashboard``, through ``hub.web``) call these methods and nothing below them for
what they do to sites and people; each act is written once, in the mixin named after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from wire.handoff import Work

from ..config import HubConfig
from ..enroll.handler import EnrollHandler
from ..link import HubLink
from ..live import Live
from ..store import Store, open_store
from ..sync import BookingSync
from .alerting import Alerting
from .audit import HUB, Actor, cli_actor
from .bookings import Bookings
from .display import Display
from .enrolling import Enrolling
from .export import Exporting
from .fleet import Fleet
from .keys import Keys
from .people import People
from .privacy import Privacy
from .pushing_alerts import WebPushing


class Hub(Privacy, Keys, Exporting, Enrolling, Bookings, People, Alerting, Display, Fleet, WebPushing):
    """The hub's acts on one store (see the package's docstring for the list).

    The running hub makes one with its broker ``link``, the dashboard's ``live`` notices
    and its loop's ``post``; the command line gets one from ``open_hub``. Used from one
    thread: the running hub's main loop, or the command line's."""

    def __init__(self, cfg: HubConfig, store: Store, *, link: HubLink | None = None, live: Live | None = None,
                 post: Callable[[Work], None] | None = None, where: str = "the configuration",
                 actor: Actor = HUB) -> None:
        super().__init__(cfg, store, link=link, live=live, post=post, where=where)
        self._actor = actor
        self._audit_depth = 0
        self._known: dict[str, int | None] = {}
        self._enroller: EnrollHandler | None = None
        self._sync: BookingSync | None = None

    def close(self) -> None:
        """Let go of what the acts opened (the booking platform's connection); the store is
        the owner's to close."""
        self._close_sync()


@contextmanager
def open_hub(cfg: HubConfig, *, where: str = "the configuration") -> Iterator[Hub]:
    """A hub for the command line: its store created (with its directory) on first use and
    the configured sites synced into it; closed again at the end. Its acts are recorded
    as the Unix user's (``cli:<user>``, ``hub.core.audit``)."""
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(cfg.hub.store_url)
    try:
        store.sync_sites(cfg.sites)
        hub = Hub(cfg, store, where=where, actor=cli_actor())
        try:
            yield hub
        finally:
            hub.close()
    finally:
        store.close()
