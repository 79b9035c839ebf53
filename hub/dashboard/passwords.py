"""Password hashing for dashboard accounts: scrypt from the standard library.

A hash is ``scrypt$LOG2N$R$P$SALT$KEY`` (salt and key in standard base64): a fresh
16-byte salt per password, N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s on a server core;
OWASP's recommended minimum is N = 2^17 with r = 8 at p = 1, or equivalent cost: we stay
at 2^15 so that a hub on a small machine can serve a burst of logins), a 32-byte key,
compared in constant time. The parameters travel in the hash, so they can be raised
later without invalidating stored hashes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

LOG2_N = 15
R = 8
P = 1
KEY_BYTES = 32
SALT_BYTES = 16
MIN_LENGTH = 10
_MAXMEM = 256 * 1024 * 1024


def _scrypt(password: str, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << log2n, r=r, p=p, maxmem=_MAXMEM,
                          dklen=KEY_BYTES)


def hash_password(password: str) -> str:
    """A new hash of ``password`` with a fresh salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, LOG2_N, R, P)
    b64 = base64.b64encode
    return f"scrypt${LOG2_N}${R}${P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed hash."""
    try:
        scheme, log2n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt" or not (10 <= int(log2n) <= 20 and 1 <= int(r) <= 32 and 1 <= int(p) <= 16):
            return False
        want = base64.b64decode(key, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(log2n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so that a login takes as
    long for an unknown name as for a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def check_strength(password: str) -> str | None:
    """Why ``password`` is refused for a new account, or None."""
    if len(password) < MIN_LENGTH:
        return f"the password must have at least {MIN_LENGTH} characters"
    if password.strip() != password:
        return "the password must not start or end with white space"
    return None
