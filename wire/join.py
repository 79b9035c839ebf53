"""Joining a site without moving keys, and renewing its certificate: the crypto both ends share.

A join code is typed on the Pi. It names its row at the hub (``id``, 4 characters, public)
and holds the secret (26 characters = 130 bits, of which 128 are random), both in Crockford
base32, grouped by dashes for typing: ``ID-XXXXX-XXXXX-XXXXX-XXXXX-XXXXXX``. The hub keeps
only ``code_hash(secret)``. Neither the code nor its hash ever travels:

    h        = SHA-256("torwart join code v1" || 0x00 || secret as ASCII)        (stored at the hub)
    mac_key || box_key = HKDF-SHA256(h, salt = request nonce (16 random bytes),
                                    info = "torwart join v1", length = 64)
    request  = {"v": 1, "id": ID, "nonce": b64(nonce), "csr": PEM,
                "mac": b64(HMAC-SHA256(mac_key, request_bytes(id, nonce, csr)))}
    answer   = {"v": 1, "sealed": b64(n || AES-256-GCM(box_key, n, JoinGrant JSON,
                                                       aad = "torwart join answer v1" || id || nonce))}

The MAC proves the code without showing it (a wrong MAC counts an attempt against the
code); the AEAD keeps the credential key (and a broker password) secret and makes any
change to the certificate, the CA or the hub's keys on the way detectable. A recording of
both messages holds neither the code, its hash nor a key derived from them; replaying the
request gets "code used".

Renewal (``RenewRequest``) is signed with the site's current certificate key over
``renew_bytes``; the hub checks the certificate against its CA and its records.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import WireError

#: Crockford's base32 alphabet: no I, L, O, U (typed as 1, 1, 0, V).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: The code's id: 40 bits, so that nobody can find open codes by guessing ids (the join
#: endpoint is rate-limited per address, and wrong secrets for an id lock that code).
ID_CHARS = 8
#: Codes issued before ids grew from 4 characters (an upgraded hub's open codes) still parse.
LEGACY_ID_CHARS = 4
SECRET_CHARS = 26
_TYPO = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})
_INFO = b"torwart join v1"
_AAD = b"torwart join answer v1"
_RENEW = b"torwart renew v1"
#: How far a renewal request's time may be from the hub's.
RENEW_SKEW_SECONDS = 300


class JoinError(WireError):
    """A join code or message that cannot be read, or an answer that fails its check."""

    def __init__(self, message: str) -> None:
        super().__init__("join", message)

    def __str__(self) -> str:
        return str(self.args[0])


class JoinRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    v: int
    id: str
    nonce: str
    csr: str
    mac: str


class JoinAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    v: int
    sealed: str


class Broker(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    host: str
    port: int
    tls: bool


class JoinGrant(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What the hub hands a joining site (inside the sealed answer)."""

    site: str
    name: str
    cert: str
    ca: str
    signing_public_key: str
    enroll_public_key: str
    cred_key: str
    broker: Broker
    #: The broker password of a site that logs in by password (tls = false), else None.
    password: str | None
    #: The hub's template of site.toml (doors, rooms, placeholder pins).
    site_toml: str


class RenewRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    site: str
    ts: int
    cert: str
    csr: str
    sig: str


class RenewAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    cert: str
    not_after: float


def _b32(n_chars: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n_chars))


def new_code() -> tuple[str, str]:
    """A fresh (id, secret); ``format_code`` makes the text to type."""
    return _b32(ID_CHARS), _b32(SECRET_CHARS)


def format_code(code_id: str, secret: str) -> str:
    groups = [secret[i:i + 5] for i in range(0, 20, 5)] + [secret[20:]]
    return "-".join([code_id, *groups])


def parse_code(text: str) -> tuple[str, str]:
    """(id, secret) from a typed code: case, dashes and spaces do not matter, and I, L, O, U
    read as 1, 1, 0, V. JoinError for anything else."""
    clean = "".join(ch for ch in text.upper() if ch not in "- \t").translate(_TYPO)
    id_chars = len(clean) - SECRET_CHARS
    if id_chars not in (ID_CHARS, LEGACY_ID_CHARS) or any(ch not in ALPHABET for ch in clean):
        raise JoinError(f"not a join code: it has {ID_CHARS + SECRET_CHARS} letters and digits, "
                        "like 4F7QK2MZ-ABCDE-FGHJK-MNPQR-STVWX-YZ0123")
    return clean[:id_chars], clean[id_chars:]


def code_hash(secret: str) -> str:
    """What the hub stores of a code's secret (hex)."""
    return hashlib.sha256(b"torwart join code v1\x00" + secret.encode("ascii")).hexdigest()


def _keys(hash_hex: str, nonce: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=nonce, info=_INFO).derive(bytes.fromhex(hash_hex))
    return okm[:32], okm[32:]


def _request_bytes(code_id: str, nonce: bytes, csr: str) -> bytes:
    return b"\x00".join([_INFO, code_id.encode(), nonce, csr.encode()])


def _b64d(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise JoinError(f"{what} is not base64") from None


def make_request(code_id: str, secret: str, csr_pem: str) -> tuple[JoinRequest, bytes]:
    """The request for a CSR, and its nonce (needed to open the answer)."""
    nonce = os.urandom(16)
    mac_key, _ = _keys(code_hash(secret), nonce)
    mac = hmac.new(mac_key, _request_bytes(code_id, nonce, csr_pem), hashlib.sha256).digest()
    return JoinRequest(v=1, id=code_id, nonce=base64.b64encode(nonce).decode(), csr=csr_pem,
                       mac=base64.b64encode(mac).decode()), nonce


def check_request(req: JoinRequest, hash_hex: str) -> bool:
    """Whether ``req`` was made with the code whose stored hash is ``hash_hex``."""
    nonce = _b64d(req.nonce, "nonce")
    if len(nonce) != 16:
        raise JoinError("nonce must be 16 bytes")
    mac_key, _ = _keys(hash_hex, nonce)
    want = hmac.new(mac_key, _request_bytes(req.id, nonce, req.csr), hashlib.sha256).digest()
    return hmac.compare_digest(want, _b64d(req.mac, "mac"))


def seal_grant(req: JoinRequest, hash_hex: str, grant: JoinGrant) -> JoinAnswer:
    _, box_key = _keys(hash_hex, _b64d(req.nonce, "nonce"))
    n = os.urandom(12)
    box = AESGCM(box_key).encrypt(n, msgspec.json.encode(grant), _AAD + req.id.encode() + _b64d(req.nonce, "nonce"))
    return JoinAnswer(v=1, sealed=base64.b64encode(n + box).decode())


def open_grant(answer: JoinAnswer, code_id: str, secret: str, nonce: bytes) -> JoinGrant:
    """The grant in ``answer``; JoinError if it was not sealed with this code for this request
    (tampered with, or not from the hub that issued the code)."""
    _, box_key = _keys(code_hash(secret), nonce)
    raw = _b64d(answer.sealed, "sealed")
    try:
        plain = AESGCM(box_key).decrypt(raw[:12], raw[12:], _AAD + code_id.encode() + nonce)
    except Exception:  # cryptography's InvalidTag, or a short box
        raise JoinError("the hub's answer failed its check (tampered with on the way, or not from the hub "
                        "that issued this code)") from None
    try:
        return msgspec.json.decode(plain, type=JoinGrant)
    except msgspec.ValidationError as exc:
        raise JoinError(f"the hub's answer is not a join grant: {exc}") from None


def renew_bytes(site: str, ts: int, cert_pem: str, csr_pem: str) -> bytes:
    """What the site signs with its current certificate's key to renew it."""
    digest = hashlib.sha256(cert_pem.encode() + b"\x00" + csr_pem.encode()).hexdigest()
    return b"\n".join([_RENEW, site.encode(), str(ts).encode(), digest.encode()])
