"""The hub's signing keys over time: rotation, switch and retirement (PROTOCOL.md §3 ``keys``).

A rotation goes through three steps, each a compare-and-set on the store's ring:

1. ``rotate``: a new key is made (state ``next``) beside the signing key. Every cache.full
   from then on names ``keys`` = [signing, next] and is still signed by the signing key, which
   every site trusts.
2. ``switch`` (the running hub, once every site has acknowledged a cache that named both):
   the new key signs (``signing``), the old one becomes ``previous``; caches name [new] only.
3. ``retire`` (the operator, once every site has acknowledged a cache naming [new] alone):
   the old key is ``retired``, its seed file deleted; no site trusts it any more.

Before the first rotation the ring is empty: the configured ``[hub] signing_key_file``
signs and caches name no ``keys`` (they are what they always were). The store holds public
keys and states only; each seed is a key file (PROTOCOL.md §1) in ``signing-keys/`` beside
the configured file, named by its kid. The configured file always ends up holding the key
that signs (it is rewritten at the switch), so what reads it -- ``site add``, a join, the
command line verifying the hub's own publications -- hands out the key sites need; the
ring finds a key by its kid in either place, so a crash between the store's switch and
the file's rewrite changes nothing (``tidy`` finishes the rewrite).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from wire.errors import KeyFileError
from wire.keys import ed25519_public_raw, kid, new_key, read_key_file, signing_key_from_seed, write_key_file

from .config import HubConfig
from .errors import HubError
from .store import KeyRingChanged, SigningKeyRow, Store

log = logging.getLogger(__name__)


class KeyRingError(HubError):
    """A key ring step is refused now (a rotation in progress, sites still need the old key,
    a key file is missing)."""


def _public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(ed25519_public_raw(key.public_key())).decode("ascii")


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def kid_of(key: Ed25519PrivateKey) -> str:
    """The kid (PROTOCOL.md §3) of a private key's public key."""
    return kid(ed25519_public_raw(key.public_key()))


@dataclass(frozen=True)
class Phase:
    """Where the ring stands: the key that signs, the key announced beside it (``next``, a
    rotation in step 1), the key signing before it (``previous``, step 2)."""

    signing: SigningKeyRow | None
    next: SigningKeyRow | None
    previous: SigningKeyRow | None

    @property
    def announced(self) -> list[SigningKeyRow]:
        """The keys caches name now: [signing, next] in step 1, [signing] otherwise; [] before
        the first rotation (caches name no keys)."""
        return [k for k in (self.signing, self.next) if k is not None]


class KeyRing:
    """The hub's signing keys: the ring's state in ``store``, the seeds in key files."""

    def __init__(self, cfg: HubConfig, store: Store) -> None:
        self.configured = Path(cfg.hub.signing_key_file)
        self.dir = self.configured.parent / "signing-keys"
        self._store = store
        self._loaded: dict[str, Ed25519PrivateKey] = {}
        self._configured: tuple[tuple[int, ...], Ed25519PrivateKey] | None = None

    # --- reading ------------------------------------------------------------------------------

    def phase(self) -> Phase:
        rows = {r.state: r for r in self._store.signing_keys() if r.state != "retired"}
        return Phase(rows.get("signing"), rows.get("next"), rows.get("previous"))

    def configured_key(self) -> Ed25519PrivateKey:
        """The key in the configured file: read again whenever the file changed (its
        inode, size, modification or status change time), else the one read last (every
        cache published is signed: a batch of 2,000 would read it 2,000 times)."""
        try:
            st = self.configured.stat()
            stamp: tuple[int, ...] | None = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            stamp = None  # read_key_file says what is wrong
        if stamp is None or self._configured is None or self._configured[0] != stamp:
            key = signing_key_from_seed(read_key_file(self.configured))
            self._configured = None if stamp is None else (stamp, key)
            return key
        return self._configured[1]

    def key_file(self, key_id: str) -> Path:
        return self.dir / f"{key_id}.key"

    def private(self, key_id: str) -> Ed25519PrivateKey:
        """The private key with kid ``key_id``, from the configured file or ``signing-keys/``;
        KeyRingError if neither holds it."""
        key = self._loaded.get(key_id)
        if key is not None:
            return key
        for path in (self.configured, self.key_file(key_id)):
            try:
                candidate = signing_key_from_seed(read_key_file(path))
            except KeyFileError:
                continue
            if kid_of(candidate) == key_id:
                self._loaded[key_id] = candidate
                return candidate
        raise KeyRingError(f"the seed of signing key {key_id} is in neither {self.configured} nor "
                           f"{self.key_file(key_id)} (restore it from the hub's backup)")

    def signing_key(self) -> Ed25519PrivateKey:
        """The key that signs caches and commands now."""
        signing = self.phase().signing
        return self.configured_key() if signing is None else self.private(signing.kid)

    def announced(self) -> list[str] | None:
        """The ``keys`` caches name now (standard base64), or None before the first rotation."""
        return [k.public_key for k in self.phase().announced] or None

    def announced_kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.phase().announced)

    # --- steps ----------------------------------------------------------------------------------------

    def rotate(self, now: float | None = None) -> SigningKeyRow:
        """Step 1: make a new key, announced beside the signing key; the new key's row.
        KeyRingError while a rotation is in progress (a ``next`` or ``previous`` key)."""
        t = time.time() if now is None else now
        phase = self.phase()
        if phase.next is not None:
            raise KeyRingError(f"a rotation is in progress: key {phase.next.kid} waits for every site to "
                               "acknowledge it (torwart-hub keys status)")
        if phase.previous is not None:
            raise KeyRingError(f"the previous key {phase.previous.kid} is not retired yet (torwart-hub keys retire)")
        current = self.configured_key() if phase.signing is None else self.private(phase.signing.kid)
        self._save(current)
        seed = new_key()
        fresh = signing_key_from_seed(seed)
        write_key_file(self.key_file(kid_of(fresh)), seed)
        rows = [SigningKeyRow(kid_of(fresh), _public_b64(fresh), "next", t, t)]
        expect: dict[str, str | None] = {rows[0].kid: None}
        if phase.signing is None:
            made = min(t, self.configured.stat().st_mtime)  # as good as it gets for a key made by init
            rows.insert(0, SigningKeyRow(kid_of(current), _public_b64(current), "signing", made, t))
            expect[kid_of(current)] = None
        else:
            expect[phase.signing.kid] = "signing"
        try:
            self._store.change_signing_keys(expect, rows)
        except KeyRingChanged as exc:
            self.key_file(rows[-1].kid).unlink(missing_ok=True)
            raise KeyRingError(f"the key ring changed meanwhile ({exc}); try again") from None
        log.info("signing key %s made; announced beside %s", rows[-1].kid, kid_of(current))
        return rows[-1]

    def switch(self, now: float | None = None) -> SigningKeyRow:
        """Step 2: the ``next`` key signs from now on, the signing key becomes ``previous``;
        the new signing key's row. (The caller checks that every site acknowledged it.)"""
        t = time.time() if now is None else now
        phase = self.phase()
        if phase.next is None or phase.signing is None:
            raise KeyRingError("no rotation waits for a switch")
        self.private(phase.next.kid)  # its seed must be at hand before it is made the signing key
        new, old = phase.next, phase.signing
        self._store.change_signing_keys(
            {new.kid: "next", old.kid: "signing"},
            [SigningKeyRow(new.kid, new.public_key, "signing", new.created_at, t),
             SigningKeyRow(old.kid, old.public_key, "previous", old.created_at, t)])
        log.info("signing key %s signs from now on (was %s)", new.kid, old.kid)
        self.tidy()
        return self.phase().signing or new

    def retire(self, now: float | None = None) -> SigningKeyRow:
        """Step 3: drop the ``previous`` key (state ``retired``, its seed file deleted); its row.
        (The caller checks that no site still needs it.)"""
        t = time.time() if now is None else now
        old = self.phase().previous
        if old is None:
            raise KeyRingError("no previous key to retire (torwart-hub keys status)")
        self._store.change_signing_keys(
            {old.kid: "previous"}, [SigningKeyRow(old.kid, old.public_key, "retired", old.created_at, t)])
        self.key_file(old.kid).unlink(missing_ok=True)
        self._loaded.pop(old.kid, None)
        log.info("signing key %s retired", old.kid)
        return SigningKeyRow(old.kid, old.public_key, "retired", old.created_at, t)

    def tidy(self) -> bool:
        """Make the configured key file hold the signing key (after a switch, or a crash in
        one); True if it was rewritten."""
        signing = self.phase().signing
        if signing is None:
            return False
        try:
            if kid_of(self.configured_key()) == signing.kid:
                return False
        except KeyFileError:
            pass
        key = self.private(signing.kid)
        seed = _seed(key)
        tmp = self.configured.with_name(self.configured.name + ".new")
        tmp.unlink(missing_ok=True)
        write_key_file(tmp, seed)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.configured)
        log.info("%s holds the signing key %s now", self.configured, signing.kid)
        return True

    def _save(self, key: Ed25519PrivateKey) -> None:
        """Keep ``key``'s seed in ``signing-keys/`` too (the configured file is rewritten later)."""
        path = self.key_file(kid_of(key))
        if not path.exists():
            write_key_file(path, _seed(key))
        self.dir.chmod(0o700)
