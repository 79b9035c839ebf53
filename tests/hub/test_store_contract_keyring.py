"""The store contract for the signing-key ring (hub/keyring.py): keys with their states, a
compare-and-set change that writes nothing when the ring is not as expected, and each
site's announcement. Runs against every store implementation (tests/hub/store_contract.py)."""

from __future__ import annotations

import pytest

from hub.store import KeyRingChanged, SigningKeyRow, Store, open_store
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401


def key(kid: str, state: str, at: float = 100.0) -> SigningKeyRow:
    return SigningKeyRow(kid=kid, public_key=f"pub-{kid}", state=state, created_at=at, changed_at=at)


def test_an_empty_ring_has_no_keys_and_no_rollouts(store: Store) -> None:
    assert store.signing_keys() == []
    assert store.key_rollouts() == []
    assert store.key_rollout("minheim") is None


def test_keys_change_only_from_the_state_expected(store: Store) -> None:
    store.change_signing_keys({"k1": None, "k2": None}, [key("k1", "signing"), key("k2", "next", 101.0)])
    assert [(k.kid, k.state) for k in store.signing_keys()] == [("k1", "signing"), ("k2", "next")]
    # Two processes race to switch: the second finds the ring changed and writes nothing.
    switch = [key("k2", "signing", 101.0), key("k1", "previous")]
    store.change_signing_keys({"k2": "next", "k1": "signing"}, switch)
    with pytest.raises(KeyRingChanged, match="k2 is signing, expected next"):
        store.change_signing_keys({"k2": "next", "k1": "signing"}, [key("k2", "retired", 101.0)])
    with pytest.raises(KeyRingChanged, match="not in the ring"):
        store.change_signing_keys({"k9": "signing"}, [key("k1", "retired")])
    assert [(k.kid, k.state) for k in store.signing_keys()] == [("k1", "previous"), ("k2", "signing")]
    # A change keeps the key's public key and creation time, and takes the new changed_at.
    store.change_signing_keys({"k1": "previous"}, [SigningKeyRow("k1", "ignored", "retired", 1.0, 200.0)])
    k1 = store.signing_keys()[0]
    assert (k1.public_key, k1.state, k1.created_at, k1.changed_at) == ("pub-k1", "retired", 100.0, 200.0)


def test_an_unknown_key_state_is_refused_and_changes_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="not one of"):
        store.change_signing_keys({}, [key("k1", "signing"), key("k2", "maybe")])
    assert store.signing_keys() == []


def test_a_sites_rollout_is_replaced_and_survives_reopening(store_url: str) -> None:
    with open_store(store_url) as store:
        store.set_key_rollout("minheim", ["k1"], 10, ["k0"], at=1.0)
        store.set_key_rollout("altdorf", ["k1", "k2"], 7, ["k1"], at=2.0)
        store.set_key_rollout("minheim", ["k1", "k2"], 12, ["k1"], at=3.0)
    with open_store(store_url) as store:
        got = store.key_rollouts()
        assert [(r.site_id, r.keys, r.version, r.previous, r.at) for r in got] == [
            ("altdorf", ("k1", "k2"), 7, ("k1",), 2.0), ("minheim", ("k1", "k2"), 12, ("k1",), 3.0)]
        assert store.key_rollout("minheim") == got[1]
