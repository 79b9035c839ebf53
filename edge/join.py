"""``torwart-edge join --hub URL --code CODE --config PATH``: a Pi joins its hub with a
one-time code. The site's key pair is made here and never leaves; the hub answers the
certificate request (wire/join.py: MAC'd and sealed with keys from the code) with the
certificate, the CA, the hub's signing and enrollment keys, the credential key and the
broker settings, and this writes them beside the config:

    site.toml      new: the hub's template (doors, rooms, placeholder pins; edit the hardware
                   part); existing: its [site] id/name and [hub] keys replaced, the rest kept
                   (the old file stays as site.toml.before-join)
    SITE.key       the site's private key (0600), SITE.crt, ca.crt
    cred.key       the credential key (0600); mqtt.password (0600) for a password login

Nothing is written unless the answer passes every check (sealed with this code for this
request, the certificate from the CA in it, for our key and the site).
"""

from __future__ import annotations

import base64
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import tomli_w
from cryptography import x509

from wire import join as wj
from wire.keys import write_key_file

from .renew import JOIN_PATH, RenewError, check_issued, key_pem, new_key_and_csr, post_json, write_private

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Joined:
    site: str
    name: str
    config: Path
    files: tuple[Path, ...]
    merged: bool
    not_after: float


def join(hub_url: str, code: str, config: str | Path, *, timeout: float = 30.0) -> Joined:
    """Join (see the module's docstring); RenewError (an EdgeError) when refused or checks fail."""
    try:
        code_id, secret = wj.parse_code(code)
    except wj.JoinError as exc:
        raise RenewError(str(exc)) from None
    if not hub_url.startswith(("http://", "https://")):
        raise RenewError(f"--hub must be the hub's http:// or https:// URL, not {hub_url!r}")
    cfg_path = Path(config)
    existing = _read_existing(cfg_path)  # before the code is spent: a broken file changes nothing
    key, csr = new_key_and_csr()
    req, nonce = wj.make_request(code_id, secret, csr)
    raw = post_json(hub_url.rstrip("/") + JOIN_PATH, msgspec.json.encode(req), timeout)
    try:
        grant = wj.open_grant(msgspec.json.decode(raw, type=wj.JoinAnswer), code_id, secret, nonce)
    except (msgspec.DecodeError, wj.JoinError) as exc:
        raise RenewError(str(exc)) from None
    try:
        cert = x509.load_pem_x509_certificate(grant.cert.encode())
        ca = x509.load_pem_x509_certificate(grant.ca.encode())
        cred_key = base64.b64decode(grant.cred_key, validate=True)
    except ValueError as exc:
        raise RenewError(f"the hub's answer holds something unreadable: {exc}") from None
    check_issued(cert, ca, key, grant.site)

    d = cfg_path.resolve().parent
    d.mkdir(parents=True, exist_ok=True)
    files = [d / f"{grant.site}.key", d / f"{grant.site}.crt", d / "ca.crt", d / "cred.key"]
    write_private(files[0], key_pem(key))
    files[1].write_text(grant.cert)
    files[2].write_text(grant.ca)
    write_key_file(files[3], cred_key, overwrite=True)  # a re-join replaces the old install's
    if grant.password is not None:
        files.append(d / "mqtt.password")
        write_private(files[-1], (grant.password + "\n").encode())
    merged = existing is not None
    if existing is not None:
        _merge(cfg_path, existing, grant, hub_url)
    else:
        cfg_path.write_text(_with_url(grant.site_toml, hub_url), encoding="utf-8")
    log.info("joined as site %s; certificate until %s", grant.site, cert.not_valid_after_utc.isoformat())
    return Joined(grant.site, grant.name, cfg_path, tuple(files), merged, cert.not_valid_after_utc.timestamp())


def _with_url(text: str, hub_url: str) -> str:
    line = tomli_w.dumps({"url": hub_url}).rstrip("\n")
    return text.replace("\n[hub]\n", f"\n[hub]\n{line:<35} # the hub's HTTP side: certificate renewal\n", 1)


def _read_existing(path: Path) -> dict[str, Any] | None:
    """The site.toml already at ``path`` (None: there is none); RenewError if unreadable."""
    if not path.exists():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise RenewError(f"{path} exists and cannot be read as TOML ({exc}); fix it or move it away") from None


def _merge(path: Path, doc: dict[str, Any], grant: wj.JoinGrant, hub_url: str) -> None:
    """Put the grant into an existing site.toml (``doc``), keeping its hardware part."""
    site = doc.setdefault("site", {})
    site["id"], site["name"] = grant.site, grant.name
    hub = doc.setdefault("hub", {})
    for k in ("username", "password_file", "ca_file", "cert_file", "key_file"):
        hub.pop(k, None)
    hub.update(host=grant.broker.host, port=grant.broker.port, tls=grant.broker.tls, url=hub_url,
               signing_public_key=grant.signing_public_key, enroll_public_key=grant.enroll_public_key,
               cred_key_file="cred.key")
    if grant.broker.tls:
        hub.update(ca_file="ca.crt", cert_file=f"{grant.site}.crt", key_file=f"{grant.site}.key")
    else:
        hub.update(username=grant.site, password_file="mqtt.password")  # noqa: S106 (a file name)
    backup = path.with_name(path.name + ".before-join")
    os.replace(path, backup)
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
