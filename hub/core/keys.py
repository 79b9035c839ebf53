"""Rotating the hub's signing key (hub/keyring.py has the ring and its three steps).

The acts: ``rotate_key`` (command line: a new key, announced to every site in a new cache
version signed by the key it trusts), ``keys_step`` (the running hub, every few seconds:
announce the ring's keys to sites that have not been told yet -- a site added since --
and switch to the new key once every configured site has acknowledged a cache naming it),
``retire_key`` (command line: drop the old key once no site needs it) and ``key_status``.

A site has acknowledged an announcement when the cache version it reports (its Status or
a cache ack, ``site_state.cache_version``) is at least the first version that named the
keys (``KeyRollout.version``): a delta never leads a site across that version
(``CacheManager.delta_body``), so a site at or above it has applied a full naming them. A
site whose Status does not name its trusted keys (Status ``keys``, absent from software
too old to know ``keys`` in caches, which would ignore the announcement) never counts as
acknowledged: it holds the switch back rather than be sent caches it cannot verify.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from wire.errors import KeyFileError

from ..keyring import KeyRing, KeyRingError, Phase, kid_of
from ..publisher import VERSION_AHEAD
from ..store import KeyRollout, SigningKeyRow
from .push import Pushing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteKeys:
    """One site's view of the ring: the kids it trusts (as far as the hub knows), the kids
    announced to it and from which version, the version it reports, and whether it has
    acknowledged them."""

    site: str
    trusts: tuple[str, ...]
    announced: tuple[str, ...]
    since: int | None
    holds: int | None
    acked: bool
    #: Whether the site's last Status names the keys it trusts (Status ``keys``): a site
    #: too old to know ``keys`` in caches never does, and never counts as acknowledged.
    reports_keys: bool = True
    #: Revoked or removed (hub/core/fleet.py): it gets nothing and holds no step back; a
    #: reinstated site joins anew and receives the keys of that moment.
    blocked: bool = False


@dataclass(frozen=True)
class KeyStatus:
    """The ring (every key, oldest first), its phase and each configured site's view."""

    keys: list[SigningKeyRow]
    phase: Phase
    sites: list[SiteKeys]

    @property
    def waiting(self) -> list[str]:
        """The sites (not revoked or removed) that have not acknowledged what was announced
        to them."""
        return [s.site for s in self.sites if not s.acked and not s.blocked]


class Keys(Pushing):
    """The key rotation acts (see the module's docstring)."""

    #: The signing key the configured key file was last made to hold (``KeyRing.tidy``).
    _tidied: str | None = None

    @property
    def keyring(self) -> KeyRing:
        ring = self.caches.ring
        assert ring is not None  # Base.caches always builds one
        return ring

    def rotate_key(self, now: float | None = None) -> tuple[SigningKeyRow, dict[str, int]]:
        """Make a new signing key and announce it beside the current one to every configured
        site (a new cache version each, signed by the current key); the new key's row and
        site → the version that names it. The running hub publishes those versions."""
        t = time.time() if now is None else now
        row = self.keyring.rotate(t)
        return row, self.announce_keys(t)

    def announce_keys(self, now: float | None = None) -> dict[str, int]:
        """Give every configured site whose last announcement is not the ring's keys now a new
        cache version naming them (site → version); none before the first rotation.

        The announcement is recorded before the version is built, from the version after the
        latest: no delta is ever built across it (``CacheManager.delta_body``), so the site
        reaches it only through a full, and every full built from now on names the keys."""
        t = time.time() if now is None else now
        kids = self.keyring.announced_kids()
        if not kids:
            return {}
        rollouts = {r.site_id: r for r in self._store.key_rollouts()}
        blocked = self.blocked_sites()  # revoked or removed: told when reinstated (a new join)
        due = [s for s in self.cfg.sites
               if s.id not in blocked and ((r := rollouts.get(s.id)) is None or r.keys != kids)]
        if not due:
            return {}
        holds = self._holds()
        out: dict[str, int] = {}
        for s in due:
            rollout = rollouts.get(s.id)
            latest = self.caches.latest_version(s.id) or 0
            self._store.set_key_rollout(s.id, kids, latest + 1, self._trusts(rollout, holds.get(s.id)), at=t)
            version = self.caches.rebuild(s.id, int(t), min_version=latest)
            assert version is not None  # above min_version: always a new one
            self._send_out(s.id, version)
            out[s.id] = version
            log.info("site %s: keys %s announced from cache version %d", s.id, " ".join(kids), version)
        return out

    def key_status(self) -> KeyStatus:
        """The ring and every configured site's view of it."""
        kids = self.keyring.announced_kids()
        rollouts = {r.site_id: r for r in self._store.key_rollouts()}
        holds = self._holds()
        reporting = self._reporting()
        blocked = self.blocked_sites()
        sites = []
        for s in self.cfg.sites:
            rollout, held, reports = rollouts.get(s.id), holds.get(s.id), s.id in reporting
            if s.id in blocked:
                sites.append(SiteKeys(s.id, self._trusts(rollout, held), (), None, held, False, reports, True))
                continue
            if rollout is None or not kids:
                sites.append(SiteKeys(s.id, self._trusts(rollout, held), kids, None, held, not kids, reports))
                continue
            # Acknowledged: it holds a version that named the keys, and says it trusts them all.
            acked = (rollout.keys == kids and held is not None and held >= rollout.version and reports
                     and set(kids) <= reporting[s.id])
            trusts = self._trusts(rollout, held)
            sites.append(SiteKeys(s.id, trusts, rollout.keys, rollout.version, held, acked, reports))
        return KeyStatus(self._store.signing_keys(), self.keyring.phase(), sites)

    def keys_step(self, now: float | None = None) -> str | None:
        """The running hub's turn (every few seconds): finish a switch a crash interrupted,
        announce the ring's keys to sites not told yet, and switch to the new key once every
        configured site has acknowledged it. What was done, or None."""
        ring = self.keyring
        phase = ring.phase()
        if phase.signing is None:
            return None  # never rotated
        if self._tidied != phase.signing.kid:
            ring.tidy()
            self._tidied = phase.signing.kid
        t = time.time() if now is None else now
        told = self.announce_keys(t)
        said = f"keys announced to {', '.join(sorted(told))}" if told else None
        if phase.next is None:
            return said
        status = self.key_status()
        if status.waiting:
            return said
        new = ring.switch(t)
        self.announce_keys(t)
        return f"every site acknowledged key {new.kid}: it signs from now on"

    def retire_key(self, now: float | None = None) -> SigningKeyRow:
        """Drop the previous signing key; KeyRingError naming the sites that still need it
        (they have not acknowledged a cache naming the new key alone), or when no rotation
        has reached its switch yet."""
        status = self.key_status()
        if status.phase.next is not None:
            raise KeyRingError(f"key {status.phase.next.kid} is still being announced, the hub has not switched "
                               f"to it yet; waiting for {_names(status.waiting) or 'the running hub'} "
                               "(torwart-hub keys status)")
        if status.phase.previous is None:
            raise KeyRingError("no previous key to retire (torwart-hub keys status)")
        if status.waiting:
            raise KeyRingError(f"sites still need key {status.phase.previous.kid}: {_names(status.waiting)} "
                               "have not acknowledged a cache naming the new key alone; bring them online "
                               "(torwart-hub keys status shows each site), or take them out of the config")
        return self.keyring.retire(now)

    def _holds(self) -> dict[str, int]:
        """site → the cache version it reports, for versions the hub can have issued (as
        ``Publisher.unissued`` judges them)."""
        limit = int(time.time()) + VERSION_AHEAD
        out = {}
        for st in self._store.site_states():
            v = st.cache_version
            if v is not None and (v <= limit or v <= (self.caches.latest_version(st.site_id) or 0) + VERSION_AHEAD):
                out[st.site_id] = v
        return out

    def _reporting(self) -> dict[str, frozenset[str]]:
        """The sites whose last Status (or Last Will) names the keys they trust: those kids."""
        out: dict[str, frozenset[str]] = {}
        for st in self._store.site_states():
            try:
                doc = json.loads(st.status or "{}")
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
                out[st.site_id] = frozenset(k for k in doc["keys"] if isinstance(k, str))
        return out

    def _trusts(self, rollout: KeyRollout | None, holds: int | None) -> tuple[str, ...]:
        """What a site holding version ``holds`` trusts, as far as the hub knows: what
        ``rollout`` announced once it holds that version, what it trusted before otherwise;
        the configured key before any announcement."""
        if rollout is None:
            try:
                return (kid_of(self.keyring.configured_key()),)
            except KeyFileError:
                return ()
        return rollout.keys if holds is not None and holds >= rollout.version else rollout.previous


def _names(sites: list[str]) -> str:
    return ", ".join(sites[:20]) + (f" and {len(sites) - 20} more" if len(sites) > 20 else "")
