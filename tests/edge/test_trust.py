"""The hub's signing keys a site trusts (PROTOCOL.md §3 ``keys``, edge/trust.py): a verified
cache.full naming ``keys`` replaces them, stored with the cache in one transaction (old
keys with the old cache or new keys with the new one, also under real SIGKILLs); nothing
unverified, no delta, no refused cache and no malformed list changes them; a key no
longer named is refused; the config's key comes back only when the config changes."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cache import CacheStore
from edge.trust import Trust, apply_envelope
from tests.edge._faults import Child
from tests.edge.test_cache import entry
from wire import envelope
from wire import messages as m
from wire.errors import WireError
from wire.keys import ed25519_public_raw, kid, public_key_b64
from wire.topics import Kind

SITE = "minheim"
LIMIT = 16 * 1024 * 1024


def full(version: int, keys: list[str] | None = None, n: int = 2, prefix: str = "e") -> m.CacheFull:
    return m.CacheFull(site=SITE, version=version, issued_at=1_700_000_000, expires_at=1_700_086_400,
                       entries=[entry(i, prefix=prefix) for i in range(n)], keys=m.UNSET if keys is None else keys)


def apply(store: CacheStore, trust: Trust, body: m.Body | bytes, key: Ed25519PrivateKey,
          kind: Kind = Kind.CACHE) -> tuple[int | None, str | None]:
    return apply_envelope(store, trust, SITE, kind, [envelope.sign(body, key)], limit=LIMIT)


@pytest.fixture
def keys() -> tuple[Ed25519PrivateKey, Ed25519PrivateKey, Ed25519PrivateKey]:
    return Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def test_a_verified_full_naming_keys_replaces_the_trusted_keys_and_a_reopened_site_keeps_them(
        tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]) -> None:
    old, new, _ = keys
    cfg = public_key_b64(old)
    with CacheStore(tmp_path / "cache.db") as store:
        trust = Trust.of(cfg, store)
        assert store.trusted_keys(cfg) == [cfg]
        assert apply(store, trust, full(1, [cfg, public_key_b64(new)]), old) == (1, None)
        assert store.trusted_keys(cfg) == [cfg, public_key_b64(new)]
        assert apply(store, trust, full(2), new) == (2, None)  # the new key is trusted now
        assert apply(store, trust, full(3, [public_key_b64(new)]), new) == (3, None)
        assert apply(store, trust, full(4), old) == (None, "unknown_key")  # no longer named
    with CacheStore(tmp_path / "cache.db") as store:  # a restart: the same keys
        trust = Trust.of(cfg, store)
        assert store.trusted_keys(cfg) == [public_key_b64(new)]
        assert apply(store, trust, full(4), old) == (None, "unknown_key")
        assert store.version == 3


def test_a_forged_keys_list_signed_by_an_untrusted_key_changes_nothing(
        tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]) -> None:
    hub, _, forger = keys
    cfg = public_key_b64(hub)
    with CacheStore(tmp_path / "cache.db") as store:
        trust = Trust.of(cfg, store)
        assert apply(store, trust, full(1), hub) == (1, None)
        forged = full(2, [public_key_b64(forger)])
        assert apply(store, trust, forged, forger) == (None, "unknown_key")
        # Signed by the forger but labelled with the hub's kid: the signature fails.
        raw = msgspec.json.decode(envelope.sign(forged, forger))
        raw["kid"] = kid(ed25519_public_raw(hub.public_key()))
        held = [msgspec.json.encode(raw)]
        assert apply_envelope(store, trust, SITE, Kind.CACHE, held, limit=LIMIT) == (None, "bad_signature")
        assert store.trusted_keys(cfg) == [cfg] and trust.kids() == sorted(Trust(cfg).keys)
        assert store.version == 1
        assert apply(store, trust, full(3), forger) == (None, "unknown_key")


def test_refused_caches_and_deltas_change_no_keys(tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]) -> None:
    hub, other, _ = keys
    cfg, other_b64 = public_key_b64(hub), public_key_b64(other)
    with CacheStore(tmp_path / "cache.db") as store:
        trust = Trust.of(cfg, store)
        assert apply(store, trust, full(5), hub) == (5, None)
        # Stale: verified, but not applied, so its keys are not taken either.
        assert apply(store, trust, full(4, [other_b64]), hub) == (4, "stale_version")
        # Another site's cache naming keys.
        theirs = msgspec.structs.replace(full(6, [other_b64]), site="altdorf")
        assert apply(store, trust, theirs, hub) == (None, "wrong_site")
        # A delta cannot name keys: an extra "keys" field in it is ignored.
        d = m.encode(m.CacheDelta(site=SITE, version=6, base_version=5, issued_at=1, expires_at=2, upsert=[],
                                  remove=[]))
        d = d[:-1] + b',"keys":["' + other_b64.encode() + b'"]}'
        assert apply(store, trust, d, hub, Kind.CACHE_DELTA) == (6, None)
        assert store.trusted_keys(cfg) == [cfg]
        assert trust.kids() == sorted(Trust(cfg).keys)


@pytest.mark.parametrize("bad", [
    [], ["not base64"], ["QUFB"], [base64.b64encode(b"x" * 33).decode()],
    [base64.b64encode(b"k" * 32).decode()] * 2,
    [base64.b64encode(bytes([i]) * 32).decode() for i in range(3)],
    base64.b64encode(b"k" * 32).decode()[:-2] + "B=",  # stray bits: not canonical
])
def test_a_malformed_keys_list_is_refused_and_changes_nothing(
        tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...], bad: object) -> None:
    hub = keys[0]
    cfg = public_key_b64(hub)
    body = m.encode(full(1))[:-1] + b',"keys":' + msgspec.json.encode(bad if isinstance(bad, list) else [bad]) + b"}"
    with CacheStore(tmp_path / "cache.db") as store:
        trust = Trust.of(cfg, store)
        assert apply(store, trust, body, hub) == (None, "malformed")
        assert store.version is None and store.trusted_keys(cfg) == [cfg]
    with pytest.raises(WireError):
        m.decode(body, m.CacheFull)


def test_a_new_config_key_replaces_keys_named_for_the_old_one(
        tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]) -> None:
    """The operator's way out when the hub lost the keys the site trusts (e.g. it was rebuilt
    from a backup older than a rotation): set the hub's key in site.toml."""
    old, new, rebuilt = keys
    with CacheStore(tmp_path / "cache.db") as store:
        trust = Trust.of(public_key_b64(old), store)
        assert apply(store, trust, full(1, [public_key_b64(new)]), old) == (1, None)
        assert store.trusted_keys(public_key_b64(old)) == [public_key_b64(new)]
        assert store.trusted_keys(public_key_b64(rebuilt)) == [public_key_b64(rebuilt)]
        trust = Trust.of(public_key_b64(rebuilt), store)
        assert apply(store, trust, full(2), rebuilt) == (2, None)


# --- a power cut in the middle: the old keys with the old cache, or the new with the new ------------


def test_apply_killed_at_random_moments_keeps_keys_and_cache_together(
        tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]) -> None:
    a, b, _ = keys
    cfg = public_key_b64(a)
    named = {1: [public_key_b64(a)], 0: [public_key_b64(a), public_key_b64(b)]}  # by version parity
    db = tmp_path / "cache.db"
    files = {}
    for parity, n in ((1, 5_000), (0, 30_000)):
        files[parity] = tmp_path / f"{parity}.json"
        files[parity].write_bytes(m.encode(full(1, named[parity], n=n, prefix="ab"[parity])))
    with CacheStore(db) as s:
        s.apply(msgspec.json.decode(files[1].read_bytes(), type=m.CacheFull), config_key=cfg)

    def check(allowed: set[int]) -> int:
        with CacheStore(db) as s:
            v = s.version
            assert v in allowed
            assert v is not None
            assert s.trusted_keys(cfg) == named[v % 2]
            assert s.count() == (5_000 if v % 2 else 30_000)
            return v

    rng = random.Random(13)
    current, kills, kept, got = 1, 0, 0, 0
    window = float("inf")  # the fastest apply seen: kills land around it
    for _ in range(60):
        if kills >= 8 and kept and got:
            break
        child = Child("cache", str(db), str(files[(current + 1) % 2]), str(current + 1), cfg)
        try:
            assert child.readline() == "applying"
            killed = window < float("inf") and child.kill_after(rng.uniform(0, window * 1.3))
            kills += killed
            if not killed:
                window = min(window, float(child.rest()[0].split()[2]))
        finally:
            child.close()
        old, current = current, check({current, current + 1})
        kept += current == old
        got += current == old + 1
    assert kills >= 8 and kept and got, (kills, kept, got)
