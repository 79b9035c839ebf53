"""Web Push (hub/alerts/webpush.py) against a local push service over real HTTP: the
service checks the VAPID token as a push service does (ES256 signature under the key in
``k``, audience, expiry), and the browser's side decrypts the message with ``http_ece``,
an independent implementation of RFC 8188/8291, using the subscription's private key."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hub.alerts.webpush import MAX_PAYLOAD, Subscription, Vapid, WebPushError, b64url, encrypt, send, unb64url
from testkit.util import free_port


@dataclass
class PushService:
    """A push service on a free port: answers each POST with the next of ``answers``
    (default 201) and keeps (path, headers, body)."""

    answers: list[int] = field(default_factory=list)
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                service.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = service.answers.pop(0) if service.answers else 201
                self.send_response(status)
                if 300 <= status < 400:  # somewhere a hub that followed would POST again
                    self.send_header("Location", "/redirected")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> PushService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Browser:
    """The user agent's side of a subscription: its key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    @classmethod
    def subscribe(cls, endpoint: str) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16), endpoint)

    @property
    def subscription(self) -> Subscription:
        raw = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        return Subscription(self.endpoint, b64url(raw), b64url(self.auth))

    def decrypt(self, body: bytes) -> bytes:
        plain: bytes = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        return plain


def check_vapid(headers: dict[str, str], endpoint_origin: str, public_key: str) -> dict[str, Any]:
    """What a push service checks of ``Authorization: vapid t=JWT, k=KEY``; the claims."""
    scheme, _, params = headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == public_key
    header_b64, claims_b64, sig_b64 = fields["t"].split(".")
    assert json.loads(unb64url(header_b64)) == {"typ": "JWT", "alg": "ES256"}
    sig = unb64url(sig_b64)
    assert len(sig) == 64
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    claims: dict[str, Any] = json.loads(unb64url(claims_b64))
    assert claims["aud"] == endpoint_origin
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    return claims


@pytest.fixture(name="push")
def push_fixture() -> Iterator[PushService]:
    service = PushService()
    yield service
    service.close()


@pytest.fixture(name="vapid")
def vapid_fixture(tmp_path: Path) -> Vapid:
    path = tmp_path / "keys" / "vapid.pem"
    Vapid.create(path)
    return Vapid.load(path, "mailto:hub@example.org")


def test_a_push_message_reaches_the_browser_readable_by_it_alone(push: PushService, vapid: Vapid) -> None:
    browser = Browser.subscribe(push.origin + "/push/abc123")
    text = json.dumps({"title": "Tür aufgebrochen: Bürgerhaus Minheim", "url": "https://hub/sites/minheim"},
                      ensure_ascii=False).encode()
    delivery = send(vapid, browser.subscription, text, ttl=600, urgency="high")
    assert delivery.outcome == "delivered" and delivery.status == 201
    [(path, headers, body)] = push.got
    assert path == "/push/abc123"
    assert headers["content-encoding"] == "aes128gcm" and headers["ttl"] == "600" and headers["urgency"] == "high"
    assert check_vapid(headers, push.origin, vapid.public_key)["sub"] == "mailto:hub@example.org"
    assert text not in body and b"Minheim" not in body  # the push service sees ciphertext only
    assert browser.decrypt(body) == text
    # Another browser's keys cannot read it.
    with pytest.raises(Exception):  # noqa: B017 (http_ece raises cryptography's InvalidTag)
        Browser.subscribe(browser.endpoint).decrypt(body)


def test_every_message_is_encrypted_afresh(vapid: Vapid) -> None:
    browser = Browser.subscribe("https://push.example/x")
    a, b = encrypt(b"same", browser.subscription), encrypt(b"same", browser.subscription)
    assert a != b and a[:16] != b[:16]  # a new salt and a new one-time key each time
    assert browser.decrypt(a) == browser.decrypt(b) == b"same"
    assert len(encrypt(b"x" * MAX_PAYLOAD, browser.subscription)) <= 4096
    with pytest.raises(WebPushError, match="exceeds"):
        encrypt(b"x" * (MAX_PAYLOAD + 1), browser.subscription)


@pytest.mark.parametrize(("status", "outcome"), [(404, "gone"), (410, "gone"), (429, "retry"), (500, "retry"),
                                                 (503, "retry"), (400, "failed"), (413, "failed"),
                                                 (307, "failed")])  # a redirect is not followed
def test_the_push_services_answer_says_what_to_do_next(push: PushService, vapid: Vapid, status: int,
                                                        outcome: str) -> None:
    push.answers.append(status)
    delivery = send(vapid, Browser.subscribe(push.origin + "/p").subscription, b"hello")
    assert (delivery.outcome, delivery.status) == (outcome, status)
    assert delivery.error
    assert [path for path, _, _ in push.got] == ["/p"]  # one request, never a redirect followed


def test_a_push_service_that_cannot_be_reached_is_tried_again(vapid: Vapid) -> None:
    delivery = send(vapid, Browser.subscribe(f"http://127.0.0.1:{free_port()}/p").subscription, b"hello", timeout=2)
    assert delivery.outcome == "retry" and delivery.status is None and delivery.error


@pytest.mark.parametrize(("change", "message"), [
    ({"endpoint": "ftp://push.example/x"}, "endpoint"),
    ({"endpoint": "https://"}, "endpoint"),
    ({"endpoint": "https://push.example/" + "x" * 2048}, "endpoint"),
    ({"p256dh": b64url(b"\x04" + b"\x00" * 64)}, "not a point"),
    ({"p256dh": b64url(b"\x02" + b"\x01" * 32)}, "uncompressed"),
    ({"p256dh": "***"}, "base64url"),
    ({"auth": b64url(b"short")}, "16 bytes"),
])
def test_a_subscription_that_cannot_work_is_refused(change: dict[str, str], message: str) -> None:
    good = Browser.subscribe("https://push.example/x").subscription
    bad = Subscription(**{"endpoint": good.endpoint, "p256dh": good.p256dh, "auth": good.auth, **change})
    with pytest.raises(WebPushError, match=message):
        bad.check()
    assert good.check() is good


def test_the_vapid_key_is_private_p256_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "vapid.pem"
    Vapid.create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        Vapid.create(path)
    assert path.read_bytes() == before
    public = Vapid.load(path, "mailto:a@b").public_key
    assert len(base64.urlsafe_b64decode(public + "=")) == 65
    path.chmod(0o644)
    with pytest.raises(WebPushError, match="chmod 600"):
        Vapid.load(path, "mailto:a@b")
    other = tmp_path / "ed.pem"
    other.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    other.chmod(0o600)
    with pytest.raises(WebPushError, match="P-256"):
        Vapid.load(other, "mailto:a@b")
