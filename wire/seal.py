"""The enrollment seal (PROTOCOL.md §3, ``enroll``): a credential string encrypted to the
hub's X25519 enrollment key, bound to the site id, readable only at the hub."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import MALFORMED, WireError
from .keys import ed25519_public_raw

_INFO = b"torwart enroll v1"
_NONCE = bytes(12)


def _key(shared: bytes, eph_pub: bytes, hub_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + hub_pub, info=_INFO).derive(shared)


def seal(credential: str, hub_enroll_pub: X25519PublicKey, site: str) -> str:
    """Seal ``credential`` for the hub; the result is the ``sealed`` field of ``enroll.read``."""
    eph = X25519PrivateKey.generate()
    eph_pub = ed25519_public_raw(eph.public_key())
    hub_pub = ed25519_public_raw(hub_enroll_pub)
    key = _key(eph.exchange(hub_enroll_pub), eph_pub, hub_pub)
    ct = ChaCha20Poly1305(key).encrypt(_NONCE, credential.encode("utf-8"), site.encode("utf-8"))
    return base64.b64encode(eph_pub + ct).decode("ascii")


def unseal(sealed: str, hub_enroll_key: X25519PrivateKey, site: str) -> str:
    """Open a sealed credential from ``site``; raise WireError(malformed) if it was altered."""
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(MALFORMED, "sealed credential is not base64", field="$.sealed") from None
    if len(raw) < 32 + 16:
        raise WireError(MALFORMED, "sealed credential is too short", field="$.sealed")
    eph_pub, ct = raw[:32], raw[32:]
    hub_pub = ed25519_public_raw(hub_enroll_key.public_key())
    key = _key(hub_enroll_key.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, hub_pub)
    try:
        plain = ChaCha20Poly1305(key).decrypt(_NONCE, ct, site.encode("utf-8"))
    except InvalidTag:
        raise WireError(MALFORMED, "sealed credential does not open (altered, or sealed for another site)",
                        field="$.sealed") from None
    return plain.decode("utf-8")
