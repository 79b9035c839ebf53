"""Web Push to a caretaker's phone: message encryption (RFC 8291, the ``aes128gcm``
content coding of RFC 8188) and the hub's VAPID identity (RFC 8292), over ``requests``.

A browser that subscribes hands the dashboard a ``Subscription``: the push service's
``endpoint`` URL, the browser's P-256 public key (``p256dh``) and a 16-byte ``auth``
secret. ``send`` encrypts a payload to that key so that only the browser can read it
(the push service sees ciphertext), signs a short-lived VAPID token with the hub's P-256
key so the push service knows who sends, and POSTs it. The hub's key lives in
``{data_dir}/keys/vapid.pem`` (made by ``torwart-hub init``; owner-only); its public half
is the ``applicationServerKey`` the dashboard subscribes with.

``send`` answers with a ``Delivery``: delivered, gone (404/410: the subscription ended,
forget it), or a failure to retry (network error, 429, 5xx) or not (any other 4xx).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wire.private import loose_mode

from ..store import OutMail

log = logging.getLogger(__name__)

#: Record size announced in the header: the whole message is one record (payloads are small).
RECORD_SIZE = 4096
#: Push services accept at least 4096 bytes of body; the header and tag take 103.
MAX_PAYLOAD = RECORD_SIZE - 103
#: VAPID tokens are valid for this long (RFC 8292: at most 24 h).
TOKEN_SECONDS = 12 * 3600


CHANNEL = "push"


def notification(mail: OutMail, *, link: str, tag: str, urgent: bool) -> OutMail:
    """``mail`` (an alert's message, hub/alerts/texts.py) as a push notification's queue
    row: its subject as the title, its first lines as the text, the site's page to open,
    a ``tag`` per (site, kind, subject) so that a phone shows one notification per alert
    (a reminder or the all-clear replaces it); ``urgent`` ones stay until dismissed."""
    title = mail.subject.removeprefix("[Torwart] ")
    lines = [ln for ln in mail.body.split("\n\n", 1)[0].splitlines() if ln]
    doc = {"title": title, "body": "\n".join(lines[1:]) or title, "url": link, "tag": tag, "urgent": urgent}
    return OutMail(recipient=mail.recipient, subject=title, body=json.dumps(doc, ensure_ascii=False),
                   not_before=mail.not_before, channel=CHANNEL)


class WebPushError(ValueError):
    """A subscription or key that cannot be used (the message says why)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        raise WebPushError("not base64url") from None


@dataclass(frozen=True, slots=True)
class Subscription:
    """What the browser's ``PushSubscription.toJSON()`` holds."""

    endpoint: str
    p256dh: str
    auth: str

    def check(self) -> Subscription:
        """Self, or WebPushError: an https endpoint, a P-256 point, a 16-byte secret."""
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc or len(self.endpoint) > 2048:
            raise WebPushError("endpoint must be an http(s) URL of at most 2048 characters")
        _public_key(unb64url(self.p256dh))
        if len(unb64url(self.auth)) != 16:
            raise WebPushError("auth must be 16 bytes")
        return self


def _public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    if len(raw) != 65 or raw[0] != 4:
        raise WebPushError("p256dh must be an uncompressed P-256 point (65 bytes)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise WebPushError("p256dh is not a point on P-256") from None


def _hmac(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869) for one block, which is all RFC 8291 needs."""
    return _hmac(prk, info + b"\x01")[:length]


def encrypt(payload: bytes, sub: Subscription, *, salt: bytes | None = None,
            server_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """The ``aes128gcm`` body of a push message carrying ``payload`` to ``sub`` (RFC 8291
    §3.4 and RFC 8188 §2): one record, its padding delimiter 0x02. ``salt`` and
    ``server_key`` (the sender's one-time ECDH key) are fresh unless given (tests)."""
    if len(payload) > MAX_PAYLOAD:
        raise WebPushError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    ua_raw = unb64url(sub.p256dh)
    ua_public = _public_key(ua_raw)
    auth = unb64url(sub.auth)
    server_key = server_key or ec.generate_private_key(ec.SECP256R1())
    as_raw = server_key.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
    shared = server_key.exchange(ec.ECDH(), ua_public)
    ikm = _expand(_hmac(auth, shared), b"WebPush: info\x00" + ua_raw + as_raw, 32)
    salt = salt if salt is not None else os.urandom(16)
    prk = _hmac(salt, ikm)
    cek = _expand(prk, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _expand(prk, b"Content-Encoding: nonce\x00", 12)
    sealed = AESGCM(cek).encrypt(nonce, payload + b"\x02", None)
    return salt + struct.pack(">IB", RECORD_SIZE, len(as_raw)) + as_raw + sealed


class Vapid:
    """The hub's VAPID key (P-256) and the tokens it signs."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        self.key = key
        self.subject = subject

    @classmethod
    def load(cls, path: Path, subject: str) -> Vapid:
        """The key in ``path`` (PEM, owner-readable only); WebPushError otherwise."""
        try:
            mode = loose_mode(path.stat().st_mode)
            if mode is not None:
                raise WebPushError(f"{path} is readable by others (mode {mode:04o}); chmod 600 it")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise WebPushError(f"cannot read the VAPID key {path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise WebPushError(f"{path} does not hold a P-256 key")
        return cls(key, subject)

    @staticmethod
    def create(path: Path) -> None:
        """Write a new key to ``path`` (0600; never over an existing file)."""
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    @property
    def public_key(self) -> str:
        """The ``applicationServerKey`` (base64url of the uncompressed point)."""
        return b64url(self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                         serialization.PublicFormat.UncompressedPoint))

    def token(self, endpoint: str, now: float) -> str:
        """A VAPID JWT (ES256) for the push service behind ``endpoint``."""
        parts = urlsplit(endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}", "exp": int(now) + TOKEN_SECONDS, "sub": self.subject}
        signing_input = (b64url(json.dumps({"typ": "JWT", "alg": "ES256"}, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def authorization(self, endpoint: str, now: float) -> str:
        return f"vapid t={self.token(endpoint, now)}, k={self.public_key}"


Outcome = Literal["delivered", "gone", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    #: The push service's status (None: no answer) and what went wrong, for the dashboard.
    status: int | None = None
    error: str | None = None


def send(vapid: Vapid, sub: Subscription, payload: bytes, *, ttl: int = 3600, urgency: str = "normal",
         timeout: float = 10.0, session: requests.Session | None = None, now: float | None = None) -> Delivery:
    """Encrypt ``payload`` to ``sub`` and hand it to its push service (see the module)."""
    body = encrypt(payload, sub)
    headers = {"Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream", "TTL": str(ttl),
               "Urgency": urgency, "Authorization": vapid.authorization(sub.endpoint, time.time() if now is None
                                                                         else now)}
    try:
        r = (session or requests).post(sub.endpoint, data=body, headers=headers, timeout=timeout,
                                       allow_redirects=False)
    except requests.RequestException as exc:
        return Delivery("retry", None, f"{type(exc).__name__}: {exc}"[:300])
    if r.status_code in (200, 201, 202):
        return Delivery("delivered", r.status_code)
    if r.status_code in (404, 410):
        return Delivery("gone", r.status_code, "the subscription has ended")
    outcome: Outcome = "retry" if r.status_code == 429 or r.status_code >= 500 else "failed"
    return Delivery(outcome, r.status_code, f"push service answered {r.status_code} {r.reason}"[:120])
