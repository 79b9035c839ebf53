"""Key files and key identities (PROTOCOL.md §1, §3).

A key file holds the standard base64 of 32 raw bytes on one line and must be readable
by its owner only; a file that group or others can read is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import KeyFileError
from .private import not_owner_only


def b64_32(text: str, what: str = "key") -> bytes:
    """Decode the standard base64 of exactly 32 bytes, or raise KeyFileError."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{what} is not standard base64: {exc}") from None
    if len(raw) != 32:
        raise KeyFileError(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a 32-byte key file; refuse one that others can read, or that is malformed."""
    return b64_32(_read_private(Path(path)), str(path))


def _read_private(p: Path) -> str:
    """The text of a secret file; KeyFileError if missing, unreadable or readable by others."""
    try:
        st = p.stat()
        text = p.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{p}: key file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{p}: cannot read key file: {exc}") from None
    if (why := not_owner_only(p, st.st_mode)) is not None:
        raise KeyFileError(f"{p}: key file is {why}")
    return text


def read_scbk_file(path: str | os.PathLike[str]) -> bytes:
    """Read an OSDP Secure Channel Base Key file: 16 bytes as 32 hex characters on one
    line, readable by its owner only (like every key file); KeyFileError otherwise."""
    text = _read_private(Path(path)).strip()
    if len(text) != 32 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise KeyFileError(f"{path}: must hold the 16-byte key as 32 hex characters")
    return bytes.fromhex(text)


def write_scbk_file(path: str | os.PathLike[str], scbk: bytes) -> Path:
    """Write a 16-byte SCBK as 32 hex characters to a 0600 file (replacing it atomically)."""
    if len(scbk) != 16:
        raise ValueError("an SCBK is exactly 16 bytes")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(scbk.hex().upper() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)
    return p


def write_key_file(path: str | os.PathLike[str], raw: bytes, *, overwrite: bool = False) -> Path:
    """Write ``raw`` (32 bytes) as a 0600 key file, created with that mode from the start."""
    if len(raw) != 32:
        raise ValueError("a key file holds exactly 32 bytes")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(p, flags, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.b64encode(raw).decode("ascii") + "\n")
    os.chmod(p, 0o600)
    return p


def new_key() -> bytes:
    """32 fresh random bytes (a site credential key, a signing seed)."""
    return os.urandom(32)


def ed25519_public_raw(pub: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def kid(public_raw: bytes) -> str:
    """Key id of PROTOCOL.md §3: first 16 hex chars of SHA-256 over the raw public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def signing_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_from_b64(text: str, what: str = "signing_public_key") -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(b64_32(text, what))


def public_key_b64(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return base64.b64encode(ed25519_public_raw(key.public_key())).decode("ascii")
