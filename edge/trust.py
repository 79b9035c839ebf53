"""The hub's signing keys this site trusts, and applying a cache envelope with them.

PROTOCOL.md §3: a ``cache.full`` may name ``keys``, the hub's signing keys the site trusts
from the moment that cache is applied, replacing the ones it trusted before. The site
never trusts a key that no verified cache (or its own config, ``[hub] signing_public_key``)
named: an envelope is verified against the keys trusted now, and only its verified body
can name new ones. The keys are stored with the cache in one transaction
(``CacheStore.apply``), so a power cut leaves the old keys with the old cache or the new
keys with the new cache, never none.

``Trust`` is shared by the cache worker thread (which replaces the keys after an apply)
and the main loop (commands): the key map is replaced whole, never changed in place, so a
reader always sees one complete set.
"""

from __future__ import annotations

import logging
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wire import envelope
from wire import messages as m
from wire.errors import MALFORMED, WireError
from wire.keys import public_key_from_b64
from wire.topics import Kind

from .cache import CacheStore
from .errors import StorageError

log = logging.getLogger(__name__)


def key_map(keys: list[str]) -> dict[str, Ed25519PublicKey]:
    """kid → public key for standard-base64 public keys (what ``open_envelope`` wants)."""
    return envelope.trusted_keys(*(public_key_from_b64(k) for k in keys))


class Trust:
    """The keys a site trusts now: ``config_key`` (its ``[hub] signing_public_key``) until a
    verified cache names others (``stored``: what its cache database holds)."""

    def __init__(self, config_key: str, stored: list[str] | None = None) -> None:
        self.config_key = config_key
        self.keys: dict[str, Ed25519PublicKey] = key_map(stored or [config_key])

    @classmethod
    def of(cls, config_key: str, store: CacheStore) -> Trust:
        """The trust a site's cache database ``store`` holds."""
        return cls(config_key, store.trusted_keys(config_key))

    def kids(self) -> list[str]:
        return sorted(self.keys)

    def replace(self, keys: list[str]) -> None:
        """Trust exactly ``keys`` from now on (a verified cache named them, already stored)."""
        new = key_map(keys)
        if set(new) != set(self.keys):
            log.info("hub signing keys trusted now: %s (before: %s)", ", ".join(sorted(new)), ", ".join(self.kids()))
        self.keys = new


def apply_envelope(store: CacheStore, trust: Trust, site: str, kind: Kind, held: list[bytes], *,
                   limit: int) -> tuple[int | None, str | None]:
    """Verify one cache envelope against ``trust``, check it and apply it to ``store``;
    return (version, error code or None). A cache.full naming ``keys`` makes them the
    trusted keys, stored with it.

    ``held`` holds the envelope and is emptied once it is verified: the caller keeps no
    other reference, so the (megabytes of) envelope are freed before the body is decoded
    and applied -- the peak memory of a site taking a 100,000-entry cache."""
    version: int | None = None
    try:
        verified = envelope.open_envelope(held.pop(), trust.keys, limit=limit)
        body = envelope.decode_body(verified, site, stream=True)
        want = m.CacheFullStream if kind is Kind.CACHE else m.CacheDelta
        if not isinstance(body, want):
            raise WireError(MALFORMED, f"a {body.__struct_config__.tag} arrived on the {kind} topic")
        version = body.version
        store.note_issued_at(body.issued_at)
        t0 = time.perf_counter()
        n = store.apply(body, config_key=trust.config_key)
        log.info("cache version %d applied: %d entries in %.0f ms", body.version, n,
                 (time.perf_counter() - t0) * 1000)
        if isinstance(body, m.CacheFullStream) and isinstance(body.keys, list):
            trust.replace(body.keys)
        return version, None
    except WireError as exc:
        log.warning("cache refused (%s): %s", exc.code, exc)
        return version, exc.code
    except StorageError as exc:
        log.error("cache version %s could not be stored: %s", version, exc)
        return version, "storage"


__all__ = ["Trust", "apply_envelope", "key_map"]
