"""What every part of the application core shares: the configuration and the store, the
answer to "is this a configured site?", the signing caches, the running hub's publisher
and live notices, and the bridge to the thread that owns the store.

A ``Hub`` is used from one thread: the running hub's main loop (other threads hand it
work with ``post``/``call``), or the command line's only thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from wire.errors import KeyFileError
from wire.handoff import Work, submit

from ..caches import CacheManager
from ..config import HubConfig, SiteConfig, signing_key
from ..errors import HubError
from ..keyring import KeyRing
from ..link import HubLink
from ..live import Live, Subscription
from ..outage import log_failure
from ..publisher import Publisher
from ..store import LoginAttempt, SessionRow, Store, User
from .errors import SiteRevoked, UnknownSite

log = logging.getLogger(__name__)

T = TypeVar("T")


class Accounts(Protocol):
    """What the dashboard's logins and sessions need of the store, and nothing more."""

    def get_user(self, name: str) -> User | None: ...
    def create_session(self, key: str, user: str, csrf: str, *, now: float, expires_at: float) -> None: ...
    def get_session(self, key: str, now: float) -> SessionRow | None: ...
    def delete_session(self, key: str) -> bool: ...
    def clear_login_failures(self, key: str | None = None) -> None: ...
    def reserve_login_attempt(self, limits: Sequence[tuple[str, int]], *, at: float,
                              window: float) -> LoginAttempt: ...
    def release_login_attempt(self, ids: Sequence[int]) -> None: ...


def each_site(sites: Iterable[str], what: str, fn: Callable[[str], object]) -> None:
    """``fn(site)`` for each site; a failure is logged and the next site's turn comes
    (one site's trouble never stops the others' work)."""
    for site in sites:
        try:
            fn(site)
        except Exception as exc:
            log_failure(log, exc, "site %s: %s failed; the other sites carry on", site, what)


class Base:
    """The state the acts share. ``link``, ``live`` and ``post`` are the running hub's
    (its persistent broker session, the dashboard's change notices, its main loop's
    queue); the command line has none of them and talks to sites through short
    conversations (``hub.conversation``). ``where`` names the configuration in messages
    (``no site 'x' in /etc/torwart/hub.toml``)."""

    def __init__(self, cfg: HubConfig, store: Store, *, link: HubLink | None = None, live: Live | None = None,
                 post: Callable[[Work], None] | None = None, where: str = "the configuration") -> None:
        self.cfg = cfg
        self._store = store
        self.link = link
        self.live = live
        self.where = where
        self._post = post
        self._caches: CacheManager | None = None
        self._publisher: Publisher | None = None
        #: Whether this process brings new cache versions out itself (the running hub
        #: with a link; with several nodes, only the leader: the others record versions
        #: and the leader publishes them, as for the command line).
        self.publishing: Callable[[], bool] = lambda: True

    # --- sites ------------------------------------------------------------------------------------

    def site(self, site_id: str) -> SiteConfig:
        """The configured site ``site_id``; UnknownSite (``no site 'x' in ...``) otherwise."""
        try:
            return self.cfg.site(site_id)
        except KeyError:
            raise UnknownSite(f"no site {site_id!r} in {self.where}") from None

    def blocked_sites(self) -> frozenset[str]:
        """Sites revoked or removed (hub/core/fleet.py): nothing is published for them."""
        return frozenset(s for s, (state, _) in self._store.site_lifecycle().items() if state != "active")

    def _refuse_revoked(self, site_id: str) -> None:
        """SiteRevoked for a revoked or removed site."""
        state = self._store.site_lifecycle().get(site_id, ("active", 0.0))[0]
        if state != "active":
            raise SiteRevoked(site_id, state)

    def knows(self, site_id: str) -> bool:
        """Whether ``site_id`` is a configured site."""
        try:
            self.site(site_id)
        except UnknownSite:
            return False
        return True

    # --- the loop ----------------------------------------------------------------------------------

    def post(self, work: Work) -> None:
        """Hand ``work`` to the thread that owns this hub's store (the running hub's loop)."""
        if self._post is None:
            raise HubError("this hub has no loop to post work to (it is not the running hub)")
        self._post(work)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the hub's loop and return its result (from another thread)."""
        return submit(self.post, fn).result(timeout)

    @property
    def accounts(self) -> Accounts:
        """Users, sessions and login attempts (for the dashboard's login; on the loop)."""
        return self._store

    # --- signing and publishing ---------------------------------------------------------------------

    @property
    def caches(self) -> CacheManager:
        """The sites' caches, signed with the hub's key (read on first use: commands that
        change no cache work without it)."""
        if self._caches is None:
            try:
                key = signing_key(self.cfg)
            except KeyFileError as exc:
                raise HubError(f"signing key: {exc.args[0]} (run `torwart-hub init`)") from None
            self._caches = CacheManager(self._store, self.cfg, key, ring=KeyRing(self.cfg, self._store))
        return self._caches

    @property
    def publisher(self) -> Publisher:
        """The running hub's publisher of caches (over its persistent link)."""
        if self._publisher is None:
            self._publisher = Publisher(self.caches, self._running_link())
        return self._publisher

    @property
    def connected(self) -> bool:
        """Whether the running hub's link to the broker is up."""
        return self.link is not None and self.link.connected

    def _running_link(self) -> HubLink:
        if self.link is None:
            raise HubError("this hub has no broker link (it is not the running hub)")
        return self.link

    def subscribe(self, sites: Iterable[str]) -> Subscription:
        """Change notices for ``sites`` (the dashboard's live streams); call it on the
        asyncio loop that will wait for them."""
        if self.live is None:
            raise HubError("this hub has no live notices (it is not the running hub)")
        return self.live.subscribe(sites)

    def _notify(self, site: str, what: str) -> None:
        if self.live is not None:
            self.live.notify(site, what)
