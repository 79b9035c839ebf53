"""Renewing the site's client certificate at the hub (``POST {url}/fleet/v1/renew``,
hub/fleetweb.py), with a new key pair made here, when a third of its lifetime is left.

The request is signed with the current certificate's key (wire/join.py ``renew_bytes``);
the answer is checked (issued by our CA, for our new key and our site) before anything is
written. The new pair replaces the old one through ``{key_file}.new`` / ``{cert_file}.new``
and two renames; ``finish_pending`` completes a renewal cut between them at the next start.
The link keeps its connection and uses the new pair from its next connect
(``Link.reload_cert``), so the site stays connected across the old certificate's end.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wire import join as wj

from .config import EdgeConfig
from .errors import EdgeError

log = logging.getLogger(__name__)

RENEW_PATH = "/fleet/v1/renew"
JOIN_PATH = "/fleet/v1/join"


class RenewError(EdgeError):
    """A renewal or join the hub refused, or whose answer failed its checks."""


def new_key_and_csr() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "torwart site")]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def post_json(url: str, body: bytes, timeout: float) -> bytes:
    """POST JSON; the answer's body, or RenewError with the hub's ``error`` message."""
    if not url.startswith(("http://", "https://")):
        raise RenewError(f"the hub's URL must start with http:// or https://, not {url!r}")
    req = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (checked above)
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:  # noqa: S310 (http/https from the config)
            data: bytes = res.read(1 << 20)
            return data
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read(1 << 16)).get("error") or exc.reason
        except (ValueError, AttributeError):
            msg = exc.reason
        raise RenewError(f"the hub refused ({exc.code}): {msg}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RenewError(f"cannot reach the hub at {url}: {getattr(exc, 'reason', exc)}") from None


def check_issued(cert: x509.Certificate, ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, site: str) -> None:
    """RenewError unless ``cert`` is from ``ca``, for ``key`` and CN ``site``."""
    ca_key = ca.public_key()
    try:
        assert isinstance(ca_key, ec.EllipticCurvePublicKey)
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except Exception:
        raise RenewError("the certificate the hub sent was not issued by the hub's CA") from None
    if cert.public_key() != key.public_key():
        raise RenewError("the certificate the hub sent is not for this site's new key")
    if [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] != [site]:
        raise RenewError(f"the certificate the hub sent is not for site {site!r}")


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` created 0600 (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)


def _pending(cfg: EdgeConfig) -> tuple[Path, Path, Path, Path]:
    assert cfg.hub.cert_file and cfg.hub.key_file
    cert, key = Path(cfg.hub.cert_file), Path(cfg.hub.key_file)
    return cert, key, cert.with_name(cert.name + ".new"), key.with_name(key.name + ".new")


def finish_pending(cfg: EdgeConfig) -> None:
    """Complete a renewal interrupted between its renames (the new key is moved in only
    when the certificate in place is already the new one)."""
    if not (cfg.hub.cert_file and cfg.hub.key_file):
        return
    cert, key, cert_new, key_new = _pending(cfg)
    if not key_new.exists():
        return
    new_key = serialization.load_pem_private_key(key_new.read_bytes(), None)
    for candidate in (cert_new, cert):
        if candidate.exists() and x509.load_pem_x509_certificate(candidate.read_bytes()).public_key() \
                == new_key.public_key():
            os.replace(key_new, key)
            if candidate == cert_new:
                os.replace(cert_new, cert)
            log.warning("finished a certificate renewal interrupted earlier")
            return
    key_new.unlink()
    cert_new.unlink(missing_ok=True)


def lifetime(cfg: EdgeConfig) -> tuple[float, float] | None:
    """(not_before, not_after) of the site's certificate; None without one."""
    if not cfg.hub.cert_file:
        return None
    cert = x509.load_pem_x509_certificate(Path(cfg.hub.cert_file).read_bytes())
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def due(cfg: EdgeConfig, now: float) -> bool:
    """Whether a third or less of the certificate's lifetime is left."""
    span = lifetime(cfg)
    return span is not None and span[1] - now <= (span[1] - span[0]) / 3


def renew(cfg: EdgeConfig, *, timeout: float = 30.0) -> float:
    """Renew now: a new key pair, the request signed with the current key, the answer
    checked, the pair replaced. Returns the new certificate's end; RenewError otherwise
    (nothing is changed)."""
    if not (cfg.hub.url and cfg.hub.cert_file and cfg.hub.key_file and cfg.hub.ca_file):
        raise RenewError("renewal needs [hub] url, cert_file, key_file and ca_file")
    cert_path, key_path, cert_new, key_new = _pending(cfg)
    current_pem = cert_path.read_text()
    current_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(current_key, ec.EllipticCurvePrivateKey):
        raise RenewError(f"{key_path}: not an EC key")
    key, csr = new_key_and_csr()
    ts = int(time.time())
    sig = current_key.sign(wj.renew_bytes(cfg.site.id, ts, current_pem, csr), ec.ECDSA(hashes.SHA256()))
    body = msgspec.json.encode(wj.RenewRequest(site=cfg.site.id, ts=ts, cert=current_pem, csr=csr,
                                               sig=base64.b64encode(sig).decode()))
    raw = post_json(cfg.hub.url.rstrip("/") + RENEW_PATH, body, timeout)
    try:
        answer = msgspec.json.decode(raw, type=wj.RenewAnswer)
        cert = x509.load_pem_x509_certificate(answer.cert.encode())
    except (msgspec.DecodeError, ValueError) as exc:
        raise RenewError(f"the hub's renewal answer cannot be read: {exc}") from None
    check_issued(cert, x509.load_pem_x509_certificate(Path(cfg.hub.ca_file).read_bytes()), key, cfg.site.id)
    write_private(key_new, key_pem(key))
    cert_new.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(cert_new, cert_path)
    os.replace(key_new, key_path)
    end = cert.not_valid_after_utc
    log.info("certificate renewed: valid until %s", end.astimezone(dt.UTC).isoformat())
    return end.timestamp()


class Renewer:
    """The agent's scheduled check (on APScheduler's pool, never the main loop): renew when
    due, then tell the link to use the new pair from its next connect; a failure is logged
    and tried again at the next check."""

    def __init__(self, cfg: EdgeConfig, on_renewed: object) -> None:
        self.cfg = cfg
        self._on_renewed = on_renewed
        span = lifetime(cfg)
        #: Seconds between checks: a twentieth of the lifetime, between 1 s and an hour.
        self.every = 3600.0 if span is None else max(1.0, min(3600.0, (span[1] - span[0]) / 20))
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.hub.url and self.cfg.hub.cert_file and self.cfg.hub.key_file)

    def check(self) -> None:
        try:
            if not due(self.cfg, time.time()):
                return
            renew(self.cfg)
            self.failures = 0
            if callable(self._on_renewed):
                self._on_renewed()
        except (RenewError, OSError, ValueError) as exc:
            self.failures += 1
            log.warning("certificate renewal failed (%d in a row), tried again in %.0f s: %s", self.failures,
                        self.every, exc)
