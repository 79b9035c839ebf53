"""Provisioning: the hub's own keys and CA (``init``), where provisioned files live, and
the file helpers; everything a new site needs is ``hub.provision.site.site_add``.

Nothing here overwrites a key: ``init`` creates only what is missing, and ``site_add``
refuses a site that is already provisioned. Secret files are created 0600 from the start
(``wire.keys.write_key_file``, ``pki.KeyPair.write``, ``write_file_atomic``).

Where things go when the hub config does not say (HubConfig has no keys for them yet):

- the X25519 enrollment key: ``{data_dir}/keys/enroll.key`` (``hub.enroll_key_file``);
- the Web Push (VAPID) key: ``{data_dir}/keys/vapid.pem`` (hub/alerts/pusher.py);
- the CA: ``{data_dir}/ca/ca.crt`` and ``ca.key`` (``hub.ca_cert_file`` / ``ca_key_file``), its
  certificate revocation list ``crl.pem`` beside them (the broker's ``crlfile``);
- Mosquitto's password file and ACL: ``{data_dir}/mosquitto/passwd`` and ``acl``
  (parameters of ``init`` and ``site_add``), and beside the password file
  ``passwd-hub``: the hub's login only, for the broker's hub listener (no site can log
  in there, see firmware_configs/mosquitto/torwart.conf);
- a site's credential key: ``{data_dir}/sites/{site}/cred.key``; its bundle for the Pi:
  ``{data_dir}/provision/{site}/``.
"""

from __future__ import annotations

import fcntl
import grp
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire.errors import KeyFileError
from wire.keys import new_key, read_key_file, write_key_file

from ..alerts.pusher import vapid_key_path
from ..alerts.webpush import Vapid
from ..config import HubConfig
from ..errors import HubError
from . import pki
from .mosquitto import acl_text, password_line

log = logging.getLogger(__name__)

#: Placeholder BCM pins for generated door configs, distinct so that the file loads. Pins
#: 2/3 (I2C) and 14/15 (the UART an RDM6300 or PN532 uses) are left free.
PLACEHOLDER_PINS = (17, 27, 22, 23, 24, 25, 5, 6, 12, 13, 16, 19, 20, 21, 26, 4, 18, 7, 8, 9, 10, 11)
EDGE_DATA_DIR = "/var/lib/torwart"


class ProvisionError(HubError):
    """Provisioning was refused (bad id, site exists, hub not initialised, files in the way)."""


# --- where things live ------------------------------------------------------------------------


def enroll_key_path(cfg: HubConfig) -> Path:
    return Path(cfg.hub.enroll_key_file or cfg.hub.data_path / "keys" / "enroll.key")


def ca_paths(cfg: HubConfig) -> tuple[Path, Path]:
    """(CA certificate, CA private key)."""
    if cfg.hub.ca_cert_file and cfg.hub.ca_key_file:
        return Path(cfg.hub.ca_cert_file), Path(cfg.hub.ca_key_file)
    return cfg.hub.data_path / "ca" / "ca.crt", cfg.hub.data_path / "ca" / "ca.key"


def crl_path(cfg: HubConfig) -> Path:
    """The CRL beside the CA certificate (the broker's ``crlfile``; hub/provision/fleet.py)."""
    return ca_paths(cfg)[0].with_name("crl.pem")


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    #: Every login: the hub's and each site's (for a listener where sites log in by password).
    passwd: Path
    acl: Path

    @property
    def hub_passwd(self) -> Path:
        """The hub's login only (beside ``passwd``): the password file of the broker's hub
        listener, where client ids are not tied to the login and no site may log in."""
        return self.passwd.with_name(self.passwd.name + "-hub")


def broker_files(cfg: HubConfig, passwd_file: str | Path | None = None,
                 acl_file: str | Path | None = None) -> BrokerFiles:
    base = cfg.hub.data_path / "mosquitto"
    return BrokerFiles(Path(passwd_file or base / "passwd"), Path(acl_file or base / "acl"))


def hub_mqtt_user(cfg: HubConfig) -> str:
    return cfg.mqtt.broker_user


# --- small file helpers ---------------------------------------------------------------------------


def write_file_atomic(path: Path, data: bytes, *, mode: int = 0o600, like_existing: bool = True) -> None:
    """Replace ``path`` atomically (temp file + rename), created with ``mode``. With
    ``like_existing``, an existing file's mode and group are kept: Mosquitto reads its
    password file as its own user, so an admin may have made it group-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gid: int | None = None
    if like_existing and path.exists():
        st = path.stat()
        mode, gid = st.st_mode & 0o7777, st.st_gid
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if gid is not None and gid != os.getegid():
            try:
                os.fchown(fd, -1, gid)
            except PermissionError:
                log.warning("cannot keep the group of %s; check its permissions", path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def edit_broker_password(passwd_file: Path, user: str, line: str | None) -> bool:
    """Replace ``user``'s line in a Mosquitto password file with ``line`` (None: drop it;
    the file is created 0600 when missing); whether the file changed. The read-modify-write
    holds an exclusive lock on the file's directory (no lock file whose owner could lock
    another user out), so that two writers (a running hub answering a join, the command
    line revoking a site) never lose each other's change."""
    passwd_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(passwd_file.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lines = passwd_file.read_text(encoding="utf-8").splitlines() if passwd_file.exists() else []
        old = [ln for ln in lines if ln.strip()]
        kept = [ln for ln in old if not ln.startswith(f"{user}:")]
        if line is not None:
            kept.append(line)
        if kept == old and passwd_file.exists():
            return False
        write_file_atomic(passwd_file, "".join(ln + "\n" for ln in kept).encode())
        return True
    finally:
        os.close(fd)  # releases the lock


def set_broker_password(passwd_file: Path, user: str, password: str) -> None:
    """Add or replace ``user``'s line in a Mosquitto password file (created 0600)."""
    edit_broker_password(passwd_file, user, password_line(user, password))


def hub_password_lines(passwd_file: Path, hub_users: tuple[str, ...]) -> str:
    """The lines of ``hub_users`` in the password file ``passwd_file`` (nothing if it has none)."""
    lines = passwd_file.read_text(encoding="utf-8").splitlines() if passwd_file.exists() else []
    return "".join(ln + "\n" for ln in lines if ln.partition(":")[0] in hub_users)


def write_acl(cfg: HubConfig, acl_file: Path) -> bool:
    """Write the PROTOCOL.md §2 ACL (pattern lines, the same for every site); return
    whether the file changed."""
    ha = cfg.homeassistant
    text = acl_text((hub_mqtt_user(cfg),), homeassistant=ha.broker_user if ha.enabled else None, ha_prefix=ha.prefix)
    if acl_file.exists() and acl_file.read_text(encoding="utf-8") == text:
        return False
    write_file_atomic(acl_file, text.encode(), mode=0o644)
    return True


def require_key(path: Path, what: str) -> bytes:
    try:
        return read_key_file(path)
    except KeyFileError as exc:
        raise ProvisionError(f"{what}: {exc.args[0]} (run `torwart-hub init` first)") from None


# --- init ---------------------------------------------------------------------------------------


def init(cfg: HubConfig, *, passwd_file: str | Path | None = None, acl_file: str | Path | None = None,
         broker_hosts: Sequence[str] = (), broker_group: str | None = None) -> list[str]:
    """Create what the hub needs and does not have yet; return what was created (empty
    when everything exists: a second run changes nothing).

    The Ed25519 signing seed, the X25519 enrollment key, the CA; the hub's own MQTT
    password (when ``[mqtt]`` names a username and a password_file that does not exist)
    or client certificate (``cert_file``/``key_file`` missing); the broker's password
    file and ACL; with ``broker_hosts``, a server certificate for the broker at
    ``{data_dir}/mosquitto/server.crt``. ProvisionError if only half of a pair exists.
    With ``broker_group``, ``share_with_broker`` lets that group read what Mosquitto opens.
    """
    gid = _group_id(broker_group) if broker_group is not None else None
    created: list[str] = []
    data = cfg.hub.data_path
    if not data.exists():
        data.mkdir(parents=True, mode=0o700)
        created.append(f"data directory {data}")
    signing = Path(cfg.hub.signing_key_file)
    if not signing.exists():
        write_key_file(signing, new_key())
        created.append(f"signing key (Ed25519) {signing}")
    enroll = enroll_key_path(cfg)
    if not enroll.exists():
        write_key_file(enroll, X25519PrivateKey.generate().private_bytes_raw())
        created.append(f"enrollment key (X25519) {enroll}")
    vapid = vapid_key_path(cfg)
    if not vapid.exists():
        Vapid.create(vapid)
        created.append(f"Web Push (VAPID) key {vapid}")
    ca_cert, ca_key = ca_paths(cfg)
    if ca_cert.exists() != ca_key.exists():
        missing = ca_key if ca_cert.exists() else ca_cert
        raise ProvisionError(f"half a CA: {missing} is missing; restore it, or move the other file away")
    if not ca_cert.exists():
        pki.make_ca().write(ca_cert, ca_key)
        created.append(f"CA {ca_cert} (key {ca_key})")
    ca = pki.load(ca_cert, ca_key)
    crl = crl_path(cfg)
    if not crl.exists():
        write_file_atomic(crl, pki.make_crl(ca, []), mode=0o644)
        created.append(f"certificate revocation list {crl} (empty)")

    files = broker_files(cfg, passwd_file, acl_file)
    if not files.passwd.exists():
        write_file_atomic(files.passwd, b"")
        created.append(f"broker password file {files.passwd}")
    mq = cfg.mqtt
    if mq.username and mq.password_file and not Path(mq.password_file).exists():
        password = secrets.token_urlsafe(24)
        write_file_atomic(Path(mq.password_file), (password + "\n").encode())
        set_broker_password(files.passwd, mq.username, password)
        write_file_atomic(files.hub_passwd, hub_password_lines(files.passwd, (hub_mqtt_user(cfg),)).encode())
        created.append(f"hub MQTT password for {mq.username!r} {mq.password_file} (added to {files.passwd} "
                       f"and {files.hub_passwd})")
    elif not files.hub_passwd.exists():
        # An installation from before the hub listener had its own file: the hub's line(s).
        write_file_atomic(files.hub_passwd, hub_password_lines(files.passwd, (hub_mqtt_user(cfg),)).encode())
        created.append(f"broker password file of the hub listener {files.hub_passwd} (the hub's login only)")
    if mq.cert_file and mq.key_file and not Path(mq.cert_file).exists() and not Path(mq.key_file).exists():
        pki.issue(ca, hub_mqtt_user(cfg)).write(mq.cert_file, mq.key_file)
        created.append(f"hub MQTT client certificate {mq.cert_file} (CN {hub_mqtt_user(cfg)})")
    if write_acl(cfg, files.acl):
        created.append(f"broker ACL {files.acl}")
    if broker_hosts:
        server_cert, server_key = files.passwd.parent / "server.crt", files.passwd.parent / "server.key"
        if not server_cert.exists():
            pki.issue(ca, broker_hosts[0], server=True, hosts=tuple(broker_hosts)).write(server_cert, server_key)
            created.append(f"broker server certificate {server_cert} for {', '.join(broker_hosts)}")
    if gid is not None:
        created += share_with_broker(cfg, files, gid)
    for item in created:
        log.info("init: created %s", item)
    return created


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ProvisionError(f"no group named {name!r} on this machine") from None


def share_with_broker(cfg: HubConfig, files: BrokerFiles, gid: int) -> list[str]:
    """Let group ``gid`` (the broker's: Mosquitto opens its files as user "mosquitto", a
    member of it) read the password files, the ACL and the broker's server certificate and
    key (0640), and the CA certificate; and pass through, not list, the directories of the
    hub's data directory they are in (0710). Nothing else becomes readable: the CA key, the
    signing and site keys and the store stay private to the hub's user. Returns what changed."""
    ca_cert, _ = ca_paths(cfg)
    data = cfg.hub.data_path.resolve()
    server = files.passwd.parent / "server.crt", files.passwd.parent / "server.key"
    wanted = [(files.passwd, 0o640), (files.hub_passwd, 0o640), (files.acl, 0o640), (server[0], 0o640),
              (server[1], 0o640), (ca_cert, 0o644), (crl_path(cfg), 0o644)]
    dirs: set[Path] = set()
    for path, _mode in wanted:
        parent = path.resolve().parent
        while parent.is_relative_to(data):  # only directories inside the data directory
            dirs.add(parent)
            if parent == data:
                break
            parent = parent.parent
    changed = []
    for path, mode in [*((d, 0o710) for d in sorted(dirs)), *wanted]:
        if not path.exists():
            continue
        st = path.stat()
        if st.st_gid != gid or stat.S_IMODE(st.st_mode) != mode:
            os.chown(path, -1, gid)
            os.chmod(path, mode)
            changed.append(f"access for the broker's group: {path} (mode {mode:04o})")
    return changed
