"""A site's life at the hub without carrying keys: join codes, the join and renewal answers,
revocation, reinstatement and removal (the crypto both ends share: wire/join.py).

- ``issue_code``: a one-time code for a site (only its hash is stored; the site's open codes
  are withdrawn), valid ``hours``.
- ``answer_join``: a Pi's join request (its CSR, MAC'd with a key from the code) checked, the
  code used, the certificate issued and recorded, and everything the Pi needs sealed to the
  code. Unknown, wrong, used, withdrawn, locked and expired codes are refused (``JoinRefused``
  with an HTTP status) and change nothing but a wrong try's count.
- ``answer_renew``: a new certificate for a request signed with the site's current one.
- ``revoke``: the site's state, its certificates in the CRL, its broker password gone, the
  broker reloaded (``[hub] broker_reload``) and its live session evicted (``evict``).
"""

from __future__ import annotations

import base64
import logging
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from wire import join as wj
from wire.configfile import broker_port as default_port
from wire.keys import public_key_b64, signing_key_from_seed

from ..config import HubConfig
from ..errors import HubError
from ..store import Store
from ..store.fleet import JoinCode, SiteCert
from . import pki
from .hub_init import (
    ProvisionError,
    broker_files,
    ca_paths,
    crl_path,
    edit_broker_password,
    enroll_key_path,
    require_key,
    set_broker_password,
    write_file_atomic,
)
from .site import edge_config_text

log = logging.getLogger(__name__)

#: Wrong tries before a code is locked (it is 128 bits; this bounds a typo's cost, not a search).
#: How long after a renewal the certificate it replaced may still renew (a lost answer).
RENEW_RETRY_SECONDS = 3600.0
MAX_ATTEMPTS = 5
DEFAULT_CODE_HOURS = 24
#: ``torwart-hub sites`` warns this long before a certificate's end.
EXPIRY_WARNING_SECONDS = 30 * 86400


class JoinRefused(HubError):
    """A join or renewal refused; ``status`` is the HTTP status the endpoint answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _ca(cfg: HubConfig) -> pki.KeyPair:
    ca_cert, ca_key = ca_paths(cfg)
    if not (ca_cert.exists() and ca_key.exists()):
        raise ProvisionError(f"no CA at {ca_cert} (run `torwart-hub init` first)")
    return pki.load(ca_cert, ca_key)


def write_crl(cfg: HubConfig, store: Store, now: float) -> Path:
    """(Re)write the CRL from the store's revoked certificates (0644: the broker reads it)."""
    revoked = [(int(c.serial), c.revoked_at or now) for c in store.revoked_certs(valid_at=now)]
    path = crl_path(cfg)
    write_file_atomic(path, pki.make_crl(_ca(cfg), revoked), mode=0o644)
    return path


def reload_broker(cfg: HubConfig) -> str:
    """Run ``[hub] broker_reload`` (Mosquitto re-reads its password files, ACL and CRL on
    SIGHUP); what happened, in words."""
    if not cfg.hub.broker_reload:
        return ("the broker must reload now: torwart-broker-reload.path does it when enabled, else run "
                "systemctl reload mosquitto (or set [hub] broker_reload)")
    res = subprocess.run(cfg.hub.broker_reload, capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise ProvisionError(f"broker reload {' '.join(cfg.hub.broker_reload)} failed ({res.returncode}): "
                             f"{(res.stderr or res.stdout).strip()[:300]}")
    return f"broker reloaded ({' '.join(cfg.hub.broker_reload)})"


def issue_code(cfg: HubConfig, store: Store, site_id: str, *, broker_host: str, broker_port: int | None,
               tls: bool, hours: float, now: float) -> str:
    """A new one-time join code for a configured site (the text to type); the site's other
    open codes stop working."""
    cfg.site(site_id)  # KeyError: the caller names the config
    if not 0 < hours <= 24 * 30:
        raise ProvisionError("a join code lasts more than 0 and at most 720 hours")
    state = store.site_lifecycle().get(site_id, ("active", now))[0]
    if state != "active":
        raise ProvisionError(f"site {site_id!r} is {state}: `torwart-hub site reinstate {site_id}` first")
    code_id, secret = wj.new_code()
    store.add_join_code(JoinCode(id=code_id, site_id=site_id, secret_hash=wj.code_hash(secret), created_at=now,
                                 expires_at=now + hours * 3600, broker_host=broker_host,
                                 broker_port=default_port(broker_port, tls), tls=tls))
    log.info("site %s: join code %s issued, valid %.1f h", site_id, code_id, hours)
    return wj.format_code(code_id, secret)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _record(store: Store, site_id: str, cert: x509.Certificate, how: str, now: float) -> None:
    store.add_site_cert(SiteCert(serial=str(cert.serial_number), site_id=site_id, issued_at=now,
                                 not_after=cert.not_valid_after_utc.timestamp(), how=how))


def answer_join(cfg: HubConfig, store: Store, req: wj.JoinRequest, now: float,
                reload: Callable[[HubConfig], str] = reload_broker) -> wj.JoinAnswer:
    """Check and answer a join request (see the module's docstring); JoinRefused otherwise."""
    if req.v != 1:
        raise JoinRefused(400, f"join protocol version {req.v} is not spoken here (1 is)")
    code = store.join_code(req.id.upper())
    if code is None:
        raise JoinRefused(403, "no such join code (check what you typed)")
    why = {"used": "this join code was used already; ask for a new one (torwart-hub site join-code)",
           "withdrawn": "this join code was replaced by a newer one",
           "locked": "this join code is locked after too many wrong tries; ask for a new one"}.get(code.state)
    if why is None and code.expires_at <= now:
        why = "this join code has expired; ask for a new one (torwart-hub site join-code)"
    if why is not None:
        raise JoinRefused(410, why)
    try:
        good = wj.check_request(req, code.secret_hash)
    except wj.JoinError as exc:
        raise JoinRefused(400, str(exc)) from None
    if not good:
        n = store.join_code_failed(code.id, max_attempts=MAX_ATTEMPTS)
        log.warning("join with code %s (site %s): wrong code, try %d of %d", code.id, code.site_id, n, MAX_ATTEMPTS)
        raise JoinRefused(403, f"wrong join code ({max(0, MAX_ATTEMPTS - n)} tries left)")
    try:
        site = cfg.site(code.site_id)
    except KeyError:
        raise JoinRefused(409, f"site {code.site_id!r} is no longer in the hub's config") from None
    if store.site_lifecycle().get(site.id, ("active", now))[0] != "active":
        raise JoinRefused(403, f"site {site.id!r} is revoked")
    try:
        csr = x509.load_pem_x509_csr(req.csr.encode())
        ca = _ca(cfg)
        cert = pki.sign_csr(ca, csr, site.id, seconds=cfg.hub.site_cert_seconds)
    except ValueError as exc:
        raise JoinRefused(400, f"bad certificate request: {exc}") from None
    signing = signing_key_from_seed(require_key(Path(cfg.hub.signing_key_file), "signing key"))
    enroll = X25519PrivateKey.from_private_bytes(require_key(enroll_key_path(cfg), "enrollment key"))
    cred_key = require_key(Path(site.cred_key_file), f"site {site.id}'s credential key")
    if not store.use_join_code(code.id, now=now):
        raise JoinRefused(410, "this join code was used already; ask for a new one (torwart-hub site join-code)")
    _record(store, site.id, cert, "join", now)
    # A join is a (re)installation: whatever the site held before (an old Pi's, a copied
    # image's key or password) stops working at once.
    replaced = store.revoke_site_certs(site.id, at=now, keep=str(cert.serial_number))
    if replaced:
        write_crl(cfg, store, now)
        log.warning("site %s joined again: its %d earlier certificate(s) revoked", site.id, replaced)
    password = None
    if not code.tls:
        password = secrets.token_urlsafe(24)
        set_broker_password(broker_files(cfg).passwd, site.id, password)
    elif remove_broker_password(cfg, site.id):
        replaced += 1
    if password is not None or replaced:
        try:
            log.info("site %s: %s", site.id, reload(cfg))
        except ProvisionError as exc:  # the join stands; the broker applies it when it reloads
            log.error("site %s joined, but the broker needs a reload for its login: %s", site.id, exc)
    grant = wj.JoinGrant(
        site=site.id, name=site.name or site.id, cert=_pem(cert), ca=_pem(ca.cert),
        signing_public_key=public_key_b64(signing), enroll_public_key=public_key_b64(enroll),
        cred_key=base64.b64encode(cred_key).decode(),
        broker=wj.Broker(host=code.broker_host, port=code.broker_port, tls=code.tls), password=password,
        site_toml=edge_config_text(site, signing_public_key=public_key_b64(signing),
                                   enroll_public_key=public_key_b64(enroll), broker_host=code.broker_host,
                                   broker_port=code.broker_port, tls=code.tls,
                                   retention_days=cfg.hub.retention_days,
                                   now=cert.not_valid_before_utc),
    )
    log.info("site %s joined with code %s: certificate %s until %s", site.id, code.id, cert.serial_number,
             cert.not_valid_after_utc.isoformat())
    return wj.seal_grant(req, code.secret_hash, grant)


def answer_renew(cfg: HubConfig, store: Store, req: wj.RenewRequest, now: float) -> wj.RenewAnswer:
    """A new certificate for a site whose request is signed by its current, unrevoked,
    unexpired certificate from this CA; JoinRefused (403, or 400 for a malformed request)."""
    try:
        cert = x509.load_pem_x509_certificate(req.cert.encode())
        csr = x509.load_pem_x509_csr(req.csr.encode())
    except ValueError as exc:
        raise JoinRefused(400, f"malformed renewal request: {exc}") from None
    ca = _ca(cfg)
    try:
        pki.verify_issued(ca.cert, cert)
    except ValueError as exc:
        raise JoinRefused(403, str(exc)) from None
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cn != [req.site]:
        raise JoinRefused(403, "the certificate is not this site's")
    if not cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp():
        raise JoinRefused(403, "the certificate is not valid now (expired: the site must join again)")
    if abs(req.ts - now) > wj.RENEW_SKEW_SECONDS:
        raise JoinRefused(403, f"the request's time is more than {wj.RENEW_SKEW_SECONDS} s off the hub's")
    known = {c.serial: c for c in store.site_certs(req.site)}
    mine = known.get(str(cert.serial_number))
    if mine is None or mine.revoked_at is not None:
        raise JoinRefused(403, "the certificate is revoked or was never issued by this hub")
    newer = sorted((c for c in known.values()
                    if c.serial != mine.serial and c.issued_at >= mine.issued_at and c.revoked_at is None),
                   key=lambda c: c.issued_at)
    # Only the newest certificate renews, so that a copy of an older key cannot keep a
    # second site alive beside the real one; the one before it may within an hour (the
    # answer to its renewal was lost on the way).
    if len(newer) > 1 or (newer and newer[0].issued_at < now - RENEW_RETRY_SECONDS):
        raise JoinRefused(403, "a newer certificate was issued to this site: only the newest one renews "
                               "(a site that lost it joins again with a new code)")
    if store.site_lifecycle().get(req.site, ("active", now))[0] != "active":
        raise JoinRefused(403, f"site {req.site!r} is revoked")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise JoinRefused(400, "the certificate's key is not an EC key")
    try:
        key.verify(base64.b64decode(req.sig, validate=True), wj.renew_bytes(req.site, req.ts, req.cert, req.csr),
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise JoinRefused(403, "the request's signature does not hold") from None
    try:
        new = pki.sign_csr(ca, csr, req.site, seconds=cfg.hub.site_cert_seconds)
    except ValueError as exc:
        raise JoinRefused(400, f"bad certificate request: {exc}") from None
    _record(store, req.site, new, "renew", now)
    log.info("site %s renewed its certificate: %s until %s", req.site, new.serial_number,
             new.not_valid_after_utc.isoformat())
    return wj.RenewAnswer(cert=_pem(new), not_after=new.not_valid_after_utc.timestamp())


def remove_broker_password(cfg: HubConfig, site_id: str) -> bool:
    """Drop ``site_id``'s line from the broker password file; whether there was one."""
    passwd = broker_files(cfg).passwd
    return passwd.exists() and edit_broker_password(passwd, site_id, None)


def revoke(cfg: HubConfig, store: Store, site_id: str, now: float, *, state: str = "revoked") -> list[str]:
    """Lock ``site_id`` out: state, open codes withdrawn, certificates into the CRL, broker
    password removed, broker reloaded. What was done, in words. The caller evicts the live
    session afterwards (``hub.link.evict``) and the running hub publishes nothing for it."""
    cfg.site(site_id)
    store.set_site_state(site_id, state, at=now)
    done = [f"site {site_id} is {state}: the hub publishes nothing for it"]
    if n := store.withdraw_join_codes(site_id):
        done.append(f"{n} open join code(s) withdrawn")
    n = store.revoke_site_certs(site_id, at=now)
    done.append(f"{n} certificate(s) revoked; CRL written to {write_crl(cfg, store, now)}")
    if remove_broker_password(cfg, site_id):
        done.append(f"broker password removed from {broker_files(cfg).passwd}")
    try:
        done.append(reload_broker(cfg))
    except ProvisionError as exc:  # the rest stands; the eviction still follows
        done.append(f"FAILED: {exc}; reload the broker by hand (systemctl reload mosquitto)")
    return done
