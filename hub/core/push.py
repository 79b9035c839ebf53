"""Bringing out caches: rebuild a site's cache after a change and get it to the site.

One act, "push", in the three places the hub needs it:

- the running hub (``changed``, ``push``, ``converge``...): the new version goes out over
  its persistent link through its ``Publisher`` (a delta from what the site holds, or a
  full), and the dashboard's live view is told;
- the command line without a link (``rebuild``), and a node of several that is not the
  leader: the version is recorded in the store and the running hub (the leader), which
  watches the store's versions (``watch_versions``), publishes it;
- the command line that waits for the site (``push_and_wait``): the full cache goes out
  over a short conversation of its own, and the site's acknowledgement is awaited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from wire import messages as m
from wire.topics import Kind

from ..caches import BATCH_SITES
from ..conversation import Conversation
from ..publisher import Published, Publisher
from .audit import Auditing
from .base import each_site
from .errors import NotSent

log = logging.getLogger(__name__)

#: What the command line's conversations with a site listen to.
ACKS = (Kind.CACHE_ACK, Kind.COMMAND_ACK)


@dataclass(frozen=True)
class Result:
    """What a site answered the command line: ``ok``, the cache version pushed (None for a
    command), the site's error (or a note), and how long the answer took."""

    ok: bool
    version: int | None = None
    error: str | None = None
    seconds: float = 0.0


def no_ack(timeout: float) -> str:
    return f"no acknowledgement within {timeout:.0f} s (is the site online?)"


class Pushing(Auditing):
    """The push acts (see the module's docstring)."""

    _known: dict[str, int | None]

    def _bring_out(self, site: str, now: int) -> int | None:
        """Rebuild ``site``'s cache; a new version (returned) goes out when this is the
        running hub, and is left to the running hub otherwise."""
        version = self.caches.rebuild(site, now)
        if version is not None:
            self._send_out(site, version)
        return version

    def _send_out(self, site: str, version: int) -> None:
        """The running hub publishes new version ``version`` of ``site`` now (a delta from what
        the site holds, or a full) when it leads; elsewhere the leading node will."""
        if self.link is None:
            return
        self._notify(site, "cache")
        if not self.publishing():  # another node leads: it publishes (watch_versions)
            return
        self._known[site] = version
        state = self._store.site_state(site)
        self.publisher.converge(site, state.cache_version if state and state.online else None)

    def changed(self, sites: Iterable[str]) -> dict[str, int]:
        """The caches of ``sites`` may have changed: rebuild them (unconfigured ones are
        skipped) and bring out the new versions; site → new version. A site whose rebuild
        fails is logged and the others are done.

        Sites go BATCH_SITES at a time: their versions are recorded in one transaction
        (``CacheManager.rebuild_batch``), and only once it has committed are they
        published, each from the entries just built (``CacheManager.keeping_built``), the
        retained fulls recorded together at the end (``Publisher.batched``). A batch whose
        transaction fails publishes nothing (logged); its sites get versions at their
        next rebuild."""
        now = int(time.time())
        out: dict[str, int] = {}
        blocked = self.blocked_sites()  # revoked or removed: no cache is built for them
        todo = sorted(s for s in set(sites) if self.knows(s) and s not in blocked)
        for i in range(0, len(todo), BATCH_SITES):
            out.update(self._bring_out_batch(todo[i : i + BATCH_SITES], now))
        return out

    def _bring_out_batch(self, sites: list[str], now: int) -> dict[str, int]:
        caches = self.caches
        with caches.keeping_built():
            built = caches.rebuild_batch(sites, now)
            if self.link is None or not built:
                return built
            with self.publisher.batched():
                each_site(list(built), "publishing a new cache version", lambda s: self._send_out(s, built[s]))
        return built

    def rebuild(self, sites: Iterable[str], now: int | None = None) -> Iterator[tuple[str, int | None]]:
        """``changed`` for the command line: each configured site of ``sites``, in the
        configuration's order, with its new version or None (unchanged), as it is rebuilt
        (lazily, while the caller iterates). Revoked and removed sites are left out (no
        cache is built for them). A failure ends the iteration with its error (a HubError
        when there is no signing key)."""
        wanted = set(sites) - self.blocked_sites()
        configured = [s.id for s in self.cfg.sites if s.id in wanted]
        if not configured:
            return
        t = int(time.time()) if now is None else now
        self.caches  # noqa: B018 (the signing key is read before the first site is rebuilt)
        for site in configured:
            yield site, self._bring_out(site, t)

    def rebuild_all(self) -> dict[str, int]:
        """Rebuild every configured site's cache (the running hub at start) but those of
        revoked and removed sites; site → new version. A failing site is logged and left out."""
        built = self.caches.rebuild_all(int(time.time()), skip=self.blocked_sites())
        if built:
            log.info("built caches: %s", ", ".join(f"{s} v{v}" for s, v in built.items()))
        return built

    def push(self, site: str) -> int:
        """Rebuild ``site``'s cache and publish its latest version as the retained full now
        (the running hub); the version published. SiteRevoked for a revoked or removed
        site (nothing is built or sent for it). Recorded in the audit trail."""
        with self.audited("push", site=site) as note:
            self.site(site)
            self._refuse_revoked(site)
            self.caches.rebuild(site, int(time.time()))
            full = self.publisher.publish_full(site)
            self._notify(site, "cache")
            note.add(f"version={full.version}")
            if not full.sent:
                note.failed("not connected to the broker: the running hub publishes it when it is")
            return full.version

    # --- the running hub: following what sites hold ---------------------------------------------------

    def converge(self, site: str, reported: int | None) -> None:
        """Send ``site``, which holds version ``reported``, what it needs to reach the latest."""
        self.publisher.converge(site, reported)

    def converge_all(self) -> None:
        """Bring every configured site to its latest version (the link came up)."""
        def converge(site: str) -> None:
            state = self._store.site_state(site)
            online = state is not None and state.online
            self.publisher.converge(site, state.cache_version if online and state else None)
            self._known[site] = self.caches.latest_version(site)

        blocked = self.blocked_sites()
        todo = [s.id for s in self.cfg.sites if s.id not in blocked]
        for i in range(0, len(todo), BATCH_SITES):
            with self.publisher.batched():  # the retained fulls recorded a batch at a time
                each_site(todo[i : i + BATCH_SITES], "cache convergence", converge)

    def watch_versions(self) -> None:
        """Publish versions another process (the command line) recorded in the same store."""
        def watch(site: str) -> None:
            latest = self.caches.latest_version(site)
            if latest != self._known.get(site):
                self._known[site] = latest
                self._notify(site, "cache")
                state = self._store.site_state(site)
                self.publisher.converge(site, state.cache_version if state and state.online else None)

        blocked = self.blocked_sites()
        each_site([s.id for s in self.cfg.sites if s.id not in blocked], "publishing a new cache version", watch)

    def cache_refused(self, site: str, error: str | None, reported: int | None, version: int | None) -> None:
        """``site`` refused cache ``version`` (``Publisher.refused``)."""
        self.publisher.refused(site, error, reported, version)

    def unissued(self, site: str, version: int | None) -> str | None:
        """Why ``version``, reported by ``site``, cannot be one the hub issued, or None."""
        return self.publisher.unissued(site, version)

    # --- the command line, waiting for the site ----------------------------------------------------------

    def push_and_wait(self, site: str, *, timeout: float = 30.0) -> Result:
        """Rebuild ``site``'s cache, publish its latest full cache (retained) and wait for
        the site's ack; a site that holds that version already counts as done. Recorded in
        the audit trail, with the site's answer."""
        with self.audited("push", site=site) as note:
            res = self._push_and_wait(site, timeout=timeout)
            note.add(f"version={res.version}")
            if not res.ok:
                note.failed(res.error)
            return res

    def _push_and_wait(self, site: str, *, timeout: float) -> Result:
        self.site(site)
        self._refuse_revoked(site)
        self.caches.rebuild(site, int(time.time()))
        with Conversation(self.cfg, "cli") as talk:
            talk.connect(min(timeout, 15))
            talk.listen(site, ACKS)
            t0 = time.monotonic()
            full = self._publish_full(talk, site)
            ack = self._cache_acked(talk, site, full.version, t0 + timeout)
            if ack is None:
                return Result(False, full.version, no_ack(timeout), timeout)
            secs = time.monotonic() - t0
            if ack.ok:
                return Result(True, full.version, None, secs)
            if ack.error == "stale_version":  # it already holds this version or newer
                return Result(True, full.version, "already held", secs)
            return Result(False, full.version, ack.error, secs)

    def _publish_full(self, talk: Conversation, site: str) -> Published:
        """The latest version as the retained full over ``talk``; NotSent if it did not go out."""
        full = Publisher(self.caches, talk.link).publish_full(site)
        if not full.sent:
            raise NotSent("publishing failed: the broker connection dropped")
        return full

    def _cache_acked(self, talk: Conversation, site: str, version: int, deadline: float, *,
                     newer: bool = False) -> m.CacheAck | None:
        """``site``'s ack of cache ``version`` (with ``newer``: or a successful ack of a newer
        one), or None at ``deadline``; a successful ack is recorded as the version the site
        holds."""
        def match(a: m.CacheAck) -> bool:
            return a.version == version or (newer and a.ok and a.version is not None and a.version > version)

        ack = talk.wait(Kind.CACHE_ACK, m.CacheAck, match, deadline, site=site)
        if ack is not None and ack.ok:
            self._store.update_site_state(site, {"cache_version": ack.version})
        return ack
