"""Home Assistant's broker login (``torwart-hub homeassistant init``).

Home Assistant connects to the sites' broker like a site does, by password (the sites'
password file) or by a client certificate from the hub's CA (CN = its login), and the
ACL gives that login what hub/ha_control.py and the discovery configs need: read the
sites' retained status, door and occupancy topics and the discovery prefix, write
requests to the hub, read the hub's answers. Nothing else: no events, no caches, no
commands, no site topic to write.

The password and the certificate's key are made here, on the hub, for an administrator
to enter into Home Assistant: they go into ``{data_dir}/homeassistant/`` (0700, files
0600) and nowhere else. A second run changes nothing unless asked to make a new password.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from ..config import HubConfig
from . import pki
from .hub_init import ProvisionError, broker_files, ca_paths, set_broker_password, write_acl, write_file_atomic


@dataclass(frozen=True)
class HaLogin:
    user: str
    password_file: Path
    cert_file: Path | None
    key_file: Path | None
    passwd: Path
    acl: Path
    #: What this run made or changed (empty: nothing).
    changed: tuple[str, ...]


def ha_dir(cfg: HubConfig) -> Path:
    return cfg.hub.data_path / "homeassistant"


def init(cfg: HubConfig, *, passwd_file: str | Path | None = None, acl_file: str | Path | None = None,
         new_password: bool = False) -> HaLogin:
    """Make Home Assistant's login where missing (a new password with ``new_password``)
    and write the ACL. ProvisionError without ``[homeassistant] enabled``."""
    ha = cfg.homeassistant
    if not ha.enabled:
        raise ProvisionError("set [homeassistant] enabled = true in the hub's config first "
                             "(and control = true with user = ... for locks and the lockdown switch)")
    files = broker_files(cfg, passwd_file, acl_file)
    out = ha_dir(cfg)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed: list[str] = []
    pw_file = out / "mqtt.password"
    listed = files.passwd.exists() and any(
        ln.partition(":")[0] == ha.broker_user for ln in files.passwd.read_text(encoding="utf-8").splitlines())
    if new_password or not pw_file.exists() or not listed:
        password = secrets.token_urlsafe(24)
        write_file_atomic(pw_file, (password + "\n").encode(), like_existing=False)
        set_broker_password(files.passwd, ha.broker_user, password)
        changed.append(f"password for {ha.broker_user!r} in {files.passwd} (also in {pw_file})")
    cert, key = out / f"{ha.broker_user}.crt", out / f"{ha.broker_user}.key"
    ca_cert, ca_key = ca_paths(cfg)
    if ca_cert.exists() and ca_key.exists() and not (cert.exists() and key.exists()):
        pki.issue(pki.load(ca_cert, ca_key), ha.broker_user).write(cert, key)
        changed.append(f"client certificate {cert} (CN={ha.broker_user}) and its key")
    if write_acl(cfg, files.acl):
        changed.append(f"ACL {files.acl}")
    has_cert = cert.exists() and key.exists()
    return HaLogin(ha.broker_user, pw_file, cert if has_cert else None, key if has_cert else None,
                   files.passwd, files.acl, tuple(changed))
