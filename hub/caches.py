"""Per-site caches: bookings × enrolled credentials → entries, versioned, as full and delta.

``entries_for_site`` computes what a site should hold now; ``CacheManager`` turns that into
numbered versions kept in the store, and into the signed ``cache.full`` / ``cache.delta``
bodies that the hub's link publishes (no MQTT here).

Choices, in short:

- ``who`` is ``hub.store.pseudonym``: an HMAC of the platform's member id under a random
  hub secret kept in the store. Stable (occupancy and events stay attributable across
  rebuilds), computable for a pin-only booking whose member the hub does not know, and
  mapped back to a member only at the hub (``Store.member_by_who``).
- An entry id is ``{booking id}:{fp}`` (standing grants: ``standing:{grant id}:{fp}``),
  where ``fp`` is the first 16 hex digits of the entry's ``cred``: stable, unique per
  booking × credential, and revealing nothing the ``cred`` beside it does not.
- A version is ``max(previous + 1, now)``: strictly increasing, written with the entries in
  one transaction, and still above what sites hold if the hub's store is ever restored
  from an older backup (as long as it issued at most about one version per second).
- The change log keeps the last ``KEEP_VERSIONS`` versions or every version since the
  retained cache.full, whichever reaches further back, but at most ``MAX_VERSIONS``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wire import envelope
from wire import messages as m
from wire.creds import cred_hash, pin
from wire.errors import KeyFileError, WireError
from wire.keys import read_key_file

from .config import HubConfig, SiteConfig
from .errors import HubError
from .keyring import KeyRing
from .outage import log_failure, store_outage
from .store import CacheLogRow, CacheVersionConflict, Store, pseudonym

log = logging.getLogger(__name__)

DAY = 86400
#: Bookings that ended this long ago stay in the cache (events still refer to them).
LOOK_BACK = DAY
KEEP_VERSIONS = 200
MAX_VERSIONS = 5000
#: Sites whose versions are recorded in one transaction (``CacheManager.rebuild_batch``).
BATCH_SITES = 50
_MAX_ID = 256  # Entry.id and Entry.ref are at most 256 characters (wire.messages)

_encode = msgspec.json.Encoder().encode
_entries = msgspec.json.Decoder(list[m.Entry])
_ids = msgspec.json.Decoder(list[str])


class CacheError(HubError):
    """A cache cannot be built or served (unknown site, unreadable site key, none built)."""


def _entry_id(prefix: str, cred: str) -> str:
    entry_id = f"{prefix}:{cred[:16]}"
    if len(entry_id) > _MAX_ID:
        # Some calendar UIDs are very long; keep the id within the wire limit, stably.
        entry_id = f"#{hashlib.sha256(prefix.encode('utf-8')).hexdigest()[:32]}:{cred[:16]}"
    return entry_id


def entries_for_site(
    store: Store, site_cfg: SiteConfig, now: int, *, grace_before: int, grace_after: int,
    horizon_days: int, site_key: bytes,
) -> list[m.Entry]:
    """What site ``site_cfg`` should hold at ``now``, sorted by id.

    Confirmed bookings of the site's rooms whose [start, end) overlaps
    [now − 1 day, now + horizon_days] yield one entry per credential of the member (and
    one for ``pin:`` + the booking's pin, if it has one), valid from start − grace_before
    to end + grace_after (seconds), for the room's doors. Standing grants of the site
    that have not ended before the same window yield one entry per credential, with
    ``ref`` and ``room`` null. Two queries per site plus one for the credentials of the
    members involved; no per-booking queries.
    """
    secret = store.hub_secret("who")
    t0, t1 = now - LOOK_BACK, now + horizon_days * DAY
    room_doors = {r.id: list(r.doors) for r in site_cfg.rooms}
    site_doors = set(site_cfg.doors)
    bookings = store.cache_bookings(site_cfg.id, t0, t1)
    grants = [g for g in store.grants_for_site(site_cfg.id)
              if (g.valid_until is None or g.valid_until > t0) and (g.valid_from is None or g.valid_from < t1)]
    creds = store.credentials_for_members({b.member_id for b in bookings} | {g.member_id for g in grants})
    hashes: dict[str, str] = {}
    whos: dict[str, str] = {}

    def hashed(credential: str) -> str:
        h = hashes.get(credential)
        if h is None:
            h = hashes[credential] = cred_hash(site_key, credential)
        return h

    def who(member_id: str) -> str:
        w = whos.get(member_id)
        if w is None:
            w = whos[member_id] = pseudonym(secret, member_id)
        return w

    out: dict[str, m.Entry] = {}
    for b in bookings:
        doors = room_doors.get(b.room_id or "")
        frm, until = max(0, b.start - grace_before), b.end + grace_after
        if not doors or until < frm:
            continue
        if len(b.id) > _MAX_ID:
            log.warning("site %s: booking id of %d characters is too long for a cache; skipped",
                        site_cfg.id, len(b.id))
            continue
        strings = list(creds.get(b.member_id, ()))
        if b.pin is not None:
            try:
                strings.append(pin(b.pin))
            except WireError:
                log.warning("site %s: booking %s has a malformed pin; pin entry skipped", site_cfg.id, b.id)
        for credential in strings:
            h = hashed(credential)
            eid = _entry_id(b.id, h)
            if eid not in out:  # a member's enrolled pin may equal the booking's
                out[eid] = m.Entry(id=eid, cred=h, doors=doors, from_=frm, until=until, who=who(b.member_id),
                                   ref=b.id, room=b.room_id)
    for g in grants:
        doors = list(site_cfg.doors) if g.doors is None else [d for d in g.doors if d in site_doors]
        if not doors:
            continue
        for credential in creds.get(g.member_id, ()):
            h = hashed(credential)
            eid = _entry_id(f"standing:{g.id}", h)
            out[eid] = m.Entry(id=eid, cred=h, doors=doors, from_=g.valid_from, until=g.valid_until,
                               who=who(g.member_id), ref=None, room=None)
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True, slots=True)
class _Folded:
    """Net effect of consecutive log rows on the set at the first row's base."""

    upsert: list[m.Entry]
    remove: list[str]


def _fold(rows: Iterable[CacheLogRow]) -> _Folded:
    existed: dict[str, bool] = {}  # id → whether it was in the base set
    final: dict[str, m.Entry | None] = {}
    for row in rows:
        for e in _entries.decode(row.added):
            existed.setdefault(e.id, False)
            final[e.id] = e
        for e in _entries.decode(row.changed):
            existed.setdefault(e.id, True)
            final[e.id] = e
        for i in _ids.decode(row.removed):
            existed.setdefault(i, True)
            final[i] = None
    upsert = [e for _, e in sorted(final.items()) if e is not None]
    # An id added and removed again since the base was never at the site: nothing to send.
    remove = sorted(i for i, e in final.items() if e is None and existed[i])
    return _Folded(upsert, remove)


def _chain(rows: list[CacheLogRow], base: int) -> bool:
    """The rows lead from ``base`` without a hole."""
    prev = base
    for row in rows:
        if row.base_version != prev:
            return False
        prev = row.version
    return bool(rows)


class CacheManager:
    """Builds, versions and serves per-site caches; state lives in the store.

    Construction syncs the store's sites, rooms and resource map from ``cfg``. Call
    ``rebuild`` when bookings, credentials or grants of a site changed, and periodically
    (hourly, say): entries depend on ``now`` through the booking window, and a version
    is renewed when half its validity has passed.
    """

    def __init__(self, store: Store, cfg: HubConfig, signing_key: Ed25519PrivateKey, *,
                 ring: KeyRing | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self._key = signing_key
        #: The hub's key ring (hub.keyring): with it, caches are signed with the ring's signing
        #: key and a cache.full names the ring's announced ``keys``; without it, ``signing_key``.
        self.ring = ring
        self._valid = cfg.hub.cache_valid_hours * 3600
        self._site_keys: dict[str, bytes] = {}
        #: Site → (version, built_at, entries) rebuilt within ``keeping_built`` (None outside).
        self._built: dict[str, tuple[int, int, list[m.Entry]]] | None = None
        store.sync_sites(cfg.sites)

    def _site(self, site_id: str) -> SiteConfig:
        try:
            return self.cfg.site(site_id)
        except KeyError:
            raise CacheError(f"site {site_id!r} is not configured") from None

    def site_key(self, site_id: str) -> bytes:
        key = self._site_keys.get(site_id)
        if key is None:
            try:
                key = self._site_keys[site_id] = read_key_file(self._site(site_id).cred_key_file)
            except KeyFileError as exc:
                raise CacheError(f"site {site_id}: {exc.args[0]}") from None
        return key

    def entries(self, site_id: str, now: int) -> list[m.Entry]:
        """The entries site ``site_id`` should hold at ``now`` (see entries_for_site)."""
        b = self.cfg.booking
        return entries_for_site(
            self.store, self._site(site_id), int(now), grace_before=b.grace_before_minutes * 60,
            grace_after=b.grace_after_minutes * 60, horizon_days=b.horizon_days, site_key=self.site_key(site_id),
        )

    def rebuild(self, site_id: str, now: int, *, min_version: int = 0) -> int | None:
        """Compute the site's entries; if they differ from the latest version's (or that
        version has used up half its validity, or there is none), record a new version
        and return it; otherwise return None. Outside a ``Store.batch`` the version is
        committed before it is returned, so whatever the caller publishes is durable; inside
        one (``rebuild_batch``) only once the batch ends: publish after it.

        ``min_version``: a version the site reports although the hub never issued it
        (the store was restored from an older backup); a new version above it is issued
        even without a change, since the site would refuse anything lower as stale."""
        now = int(now)
        entries = self.entries(site_id, now)
        encoded = {e.id: _encode(e) for e in entries}
        new = {i: raw.decode("utf-8") for i, raw in encoded.items()}
        size = sum(len(raw) + 1 for raw in encoded.values())
        for attempt in range(3):
            snap = self.store.cache_snapshot(site_id)
            state, old = snap if snap is not None else (None, {})
            added = {i: e for i, e in new.items() if i not in old}
            changed = {i: e for i, e in new.items() if i in old and old[i] != e}
            removed = sorted(i for i in old if i not in new)
            base = state.version if state is not None else 0
            fresh = state is not None and now < state.built_at + self._valid // 2
            if fresh and not (added or changed or removed) and base > min_version:
                return None
            version = max(base + 1, now, min_version + 1)
            if version > m.MAX_SEQ:  # no site could decode it (wire.messages.Version)
                raise CacheError(f"site {site_id}: cache version {version} would exceed {m.MAX_SEQ}")
            try:
                self.store.record_cache_version(
                    site_id, version=version, base_version=base, built_at=now, added=added, changed=changed,
                    removed=removed, n_entries=len(new), size=size,
                )
            except CacheVersionConflict:
                # Another hub worker recorded a version in between: diff against that one.
                log.info("site %s: cache version raced (attempt %d), diffing again", site_id, attempt + 1)
                continue
            self.store.prune_cache_log(site_id, keep_last=KEEP_VERSIONS, hard_max=MAX_VERSIONS)
            if self._built is not None:
                self._built[site_id] = (version, now, entries)
            log.info("site %s: cache version %d, %d entries (+%d ~%d -%d)", site_id, version, len(new),
                     len(added), len(changed), len(removed))
            return version
        raise CacheError(f"site {site_id}: other writers kept recording cache versions; try again")

    def rebuild_all(self, now: int, *, skip: Collection[str] = ()) -> dict[str, int]:
        """Rebuild every configured site but those of ``skip`` (revoked and removed ones);
        site → new version, for those that got one (``rebuild_batch``, BATCH_SITES at a time)."""
        sites = [s.id for s in self.cfg.sites if s.id not in skip]
        out: dict[str, int] = {}
        for i in range(0, len(sites), BATCH_SITES):
            out.update(self.rebuild_batch(sites[i : i + BATCH_SITES], now))
        return out

    def rebuild_batch(self, site_ids: Iterable[str], now: int) -> dict[str, int]:
        """``rebuild`` each of ``site_ids`` in one store transaction (``Store.batch``: one
        commit, not one per site); site → new version, once it has committed. A site whose
        rebuild fails is logged and left out (its part undone); when the commit fails, it
        is logged and nothing of the batch is recorded: {} (their next rebuild makes them)."""
        out: dict[str, int] = {}
        try:
            with self.store.batch():
                for site in site_ids:
                    try:
                        with self.store.batch():  # a savepoint: a failing site undoes only its part
                            v = self.rebuild(site, now)
                    except Exception as exc:
                        if store_outage(exc):  # the whole batch is lost: the other sites would fail alike
                            raise
                        log.exception("site %s: cache rebuild failed; the other sites carry on", site)
                        continue
                    if v is not None:
                        out[site] = v
        except Exception as exc:
            if self._built is not None:
                for site in out:
                    self._built.pop(site, None)
            log_failure(log, exc, "storing the cache versions of %d sites failed: none of them is published", len(out))
            return {}
        return out

    @contextmanager
    def keeping_built(self) -> Iterator[None]:
        """Within the block, ``full_body`` serves a site's latest version, if ``rebuild``
        made it within, from the entries just computed (not read back from the store)."""
        outer = self._built is not None
        if not outer:
            self._built = {}
        try:
            yield
        finally:
            if not outer:
                self._built = None

    def latest_version(self, site_id: str) -> int | None:
        return None if (state := self.store.cache_state(site_id)) is None else state.version

    def full_body(self, site_id: str) -> m.CacheFull:
        """The latest version as a cache.full (issued_at = its build time)."""
        built = None if self._built is None else self._built.get(site_id)
        state = None if built is None else self.store.cache_state(site_id)
        if built is not None and state is not None and state.version == built[0]:
            version, built_at, entries = built
        else:
            snap = self.store.cache_snapshot(site_id)
            if snap is None:
                raise CacheError(f"site {site_id}: no cache built yet")
            st, texts = snap
            version, built_at = st.version, st.built_at
            entries = _entries.decode("[" + ",".join(texts[k] for k in sorted(texts)) + "]")
        keys = None if self.ring is None else self.ring.announced()
        return m.CacheFull(site=site_id, version=version, issued_at=built_at,
                           expires_at=built_at + self._valid, entries=entries,
                           keys=m.UNSET if keys is None else keys)

    def keys_since(self, site_id: str) -> int:
        """The version from which ``site_id``'s caches name the keys announced to it last
        (0 when none were): a delta never leads a site across it, a full does."""
        if self.ring is None:
            return 0
        rollout = self.store.key_rollout(site_id)
        return 0 if rollout is None else rollout.version

    def delta_body(self, site_id: str, from_version: int) -> m.CacheDelta | None:
        """A cache.delta from ``from_version`` to the latest version, or None: when
        ``from_version`` is the latest (nothing to send), unknown, or older than the
        kept log, or when the delta would not be smaller than the full cache (send a
        cache.full then). Removals name only ids the site holds at ``from_version``."""
        if from_version < self.keys_since(site_id):
            return None  # the site must see the keys announced since: only a full names them
        rows = self.store.cache_log(site_id, from_version)
        if not _chain(rows, from_version):
            return None
        target = rows[-1]
        folded = _fold(rows)
        if len(_encode(folded.upsert)) + len(_encode(folded.remove)) >= target.size:
            return None
        return m.CacheDelta(site=site_id, version=target.version, base_version=from_version,
                            issued_at=target.built_at, expires_at=target.built_at + self._valid,
                            upsert=folded.upsert, remove=folded.remove)

    def needs_new_retained_full(self, site_id: str) -> bool:
        """Whether to publish a new retained cache.full: none retained yet, the log since
        it is gone, or the entries changed since it exceed full_refresh_fraction of its
        entry count (a site that connects gets the retained full, then a delta)."""
        state = self.store.cache_state(site_id)
        if state is None:
            return False
        retained = state.retained_version
        if retained is None:
            return True
        if retained == state.version:
            return False
        if retained < self.keys_since(site_id):
            return True  # the retained full names older keys than the ones announced since
        limit = self.cfg.hub.full_refresh_fraction * (state.retained_entries or 0)
        if abs(state.n_entries - (state.retained_entries or 0)) > limit:
            return True  # at least that many entries came or went since: no need to read the log
        rows = self.store.cache_log(site_id, retained)
        if not _chain(rows, retained):
            return True
        folded = _fold(rows)
        return len(folded.upsert) + len(folded.remove) > limit

    def mark_retained_full(self, site_id: str, version: int) -> None:
        """Record that ``version`` is now published as the site's retained cache.full."""
        self.store.set_retained_full(site_id, version)
        self.store.prune_cache_log(site_id, keep_last=KEEP_VERSIONS, hard_max=MAX_VERSIONS)

    def signed(self, body: m.Body) -> bytes:
        """``body`` in a signed envelope (wire.envelope.sign with the hub's signing key: the
        ring's, when there is a ring)."""
        return envelope.sign(body, self._key if self.ring is None else self.ring.signing_key())
