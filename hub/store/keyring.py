"""The records of the hub's signing-key ring (hub/keyring.py; the SQLite side:
store/sqlite/keyring.py). Only public keys and states: the private seeds are key files."""

from __future__ import annotations

from dataclasses import dataclass

from .types import StoreError

#: A key's states, in the order a key goes through them: ``next`` (announced beside the
#: signing key, not yet signing), ``signing`` (the one key that signs), ``previous`` (signed
#: before the switch; sites may still need it until they acknowledged the new one alone),
#: ``retired`` (dropped: no site trusts it, the hub never signs with it again).
KEY_STATES = ("next", "signing", "previous", "retired")


@dataclass(frozen=True, slots=True)
class SigningKeyRow:
    """One of the hub's Ed25519 signing keys: its kid (PROTOCOL.md §3), the standard base64
    of its raw public key, its state (``KEY_STATES``), when it was made and when its state
    last changed (Unix seconds)."""

    kid: str
    public_key: str
    state: str
    created_at: float
    changed_at: float


@dataclass(frozen=True, slots=True)
class KeyRollout:
    """What the hub announced to one site: the kids of ``keys`` go out in every cache.full
    of ``version`` and later; before it acknowledges ``version`` the site trusts
    ``previous``. ``at``: when it was recorded."""

    site_id: str
    keys: tuple[str, ...]
    version: int
    previous: tuple[str, ...]
    at: float


class KeyRingChanged(StoreError):
    """The key ring was not in the state a change expected (another process changed it)."""
