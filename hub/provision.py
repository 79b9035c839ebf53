"""Provisioning: the hub's own keys and CA (``init``), and everything a new site needs
(``site_add``).

Nothing here overwrites a key: ``init`` creates only what is missing, and ``site_add``
refuses a site that is already provisioned. Secret files are created 0600 from the start
(``wire.keys.write_key_file``, ``pki.KeyPair.write``, ``_write_file``).

Where things go when the hub config does not say (HubConfig has no keys for them yet):

- the X25519 enrollment key: ``{data_dir}/keys/enroll.key`` (``hub.enroll_key_file``);
- the CA: ``{data_dir}/ca/ca.crt`` and ``ca.key`` (``hub.ca_cert_file`` / ``ca_key_file``);
- Mosquitto's password file and ACL: ``{data_dir}/mosquitto/passwd`` and ``acl``
  (parameters of ``init`` and ``site_add``);
- a site's credential key: ``{data_dir}/sites/{site}/cred.key``; its bundle for the Pi:
  ``{data_dir}/provision/{site}/``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire.errors import KeyFileError, WireError
from wire.keys import new_key, public_key_b64, read_key_file, signing_key_from_seed, write_key_file
from wire.topics import check_ident

from . import config as config_mod
from . import pki
from .config import HubConfig, SiteConfig
from .errors import ConfigError, HubError
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


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    passwd: Path
    acl: Path


def broker_files(cfg: HubConfig, passwd_file: str | Path | None = None,
                 acl_file: str | Path | None = None) -> BrokerFiles:
    base = cfg.hub.data_path / "mosquitto"
    return BrokerFiles(Path(passwd_file or base / "passwd"), Path(acl_file or base / "acl"))


def hub_mqtt_user(cfg: HubConfig) -> str:
    return cfg.mqtt.broker_user


# --- small file helpers ---------------------------------------------------------------------------


def _write_file(path: Path, data: bytes, *, mode: int = 0o600, like_existing: bool = True) -> None:
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


def set_broker_password(passwd_file: Path, user: str, password: str) -> None:
    """Add or replace ``user``'s line in a Mosquitto password file (created 0600)."""
    lines = passwd_file.read_text(encoding="utf-8").splitlines() if passwd_file.exists() else []
    kept = [ln for ln in lines if ln.strip() and not ln.startswith(f"{user}:")]
    kept.append(password_line(user, password))
    _write_file(passwd_file, ("\n".join(kept) + "\n").encode())


def write_acl(cfg: HubConfig, acl_file: Path) -> bool:
    """Write the PROTOCOL.md §2 ACL (pattern lines, the same for every site); return
    whether the file changed."""
    text = acl_text((hub_mqtt_user(cfg),))
    if acl_file.exists() and acl_file.read_text(encoding="utf-8") == text:
        return False
    _write_file(acl_file, text.encode(), mode=0o644)
    return True


def _require_key(path: Path, what: str) -> bytes:
    try:
        return read_key_file(path)
    except KeyFileError as exc:
        raise ProvisionError(f"{what}: {exc.args[0]} (run `torwart-hub init` first)") from None


# --- init ---------------------------------------------------------------------------------------


def init(cfg: HubConfig, *, passwd_file: str | Path | None = None, acl_file: str | Path | None = None,
         broker_hosts: Sequence[str] = ()) -> list[str]:
    """Create what the hub needs and does not have yet; return what was created (empty
    when everything exists: a second run changes nothing).

    The Ed25519 signing seed, the X25519 enrollment key, the CA; the hub's own MQTT
    password (when ``[mqtt]`` names a username and a password_file that does not exist)
    or client certificate (``cert_file``/``key_file`` missing); the broker's password
    file and ACL; with ``broker_hosts``, a server certificate for the broker at
    ``{data_dir}/mosquitto/server.crt``. ProvisionError if only half of a pair exists.
    """
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
    ca_cert, ca_key = ca_paths(cfg)
    if ca_cert.exists() != ca_key.exists():
        missing = ca_key if ca_cert.exists() else ca_cert
        raise ProvisionError(f"half a CA: {missing} is missing; restore it, or move the other file away")
    if not ca_cert.exists():
        pki.make_ca().write(ca_cert, ca_key)
        created.append(f"CA {ca_cert} (key {ca_key})")
    ca = pki.load(ca_cert, ca_key)

    files = broker_files(cfg, passwd_file, acl_file)
    if not files.passwd.exists():
        _write_file(files.passwd, b"")
        created.append(f"broker password file {files.passwd}")
    mq = cfg.mqtt
    if mq.username and mq.password_file and not Path(mq.password_file).exists():
        password = secrets.token_urlsafe(24)
        _write_file(Path(mq.password_file), (password + "\n").encode())
        set_broker_password(files.passwd, mq.username, password)
        created.append(f"hub MQTT password for {mq.username!r} {mq.password_file} (added to {files.passwd})")
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
    for item in created:
        log.info("init: created %s", item)
    return created


# --- site add -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteBundle:
    """What ``site_add`` made. ``dir`` holds everything the Pi needs (secrets included:
    copy it, then delete it); ``config`` is the reloaded hub config with the site."""

    site_id: str
    dir: Path
    site_config: Path
    files: tuple[Path, ...]
    hub_cred_key_file: Path
    broker: BrokerFiles
    appended: bool
    tls: bool
    config: HubConfig


def _kv(key: str, value: object, comment: str = "") -> str:
    line = tomli_w.dumps({key: value}).rstrip("\n")
    return f"{line:<35} # {comment}" if comment else line


def _door_rooms(site: SiteConfig) -> dict[str, str]:
    """Door → the room a badge there checks into: the room of the same id, else the only
    room of a door that serves one room alone (a shared entrance checks into none)."""
    out: dict[str, str] = {}
    for door in site.doors:
        rooms = [r for r in site.rooms if door in r.doors]
        if any(r.id == door for r in rooms):
            out[door] = door
        elif len(rooms) == 1 and rooms[0].doors == [door]:
            out[door] = rooms[0].id
    return out


def edge_config_text(site: SiteConfig, *, signing_public_key: str, enroll_public_key: str, broker_host: str,
                     broker_port: int, tls: bool, retention_days: int, now: dt.datetime) -> str:
    """The site's ``site.toml``: keys and broker filled in, doors and rooms from the hub
    config, placeholder pins, reader templates. File names are relative to the file."""
    doors = list(site.doors) or ["main"]
    if len(doors) > len(PLACEHOLDER_PINS):
        raise ProvisionError(f"site {site.id} has {len(doors)} doors, more than one Pi's free GPIO pins; "
                             "write its site config by hand")
    pins = dict(zip(doors, PLACEHOLDER_PINS, strict=False))
    head = [
        f"# Torwart site agent configuration for site {site.id!r}"
        + (f" ({site.name})" if site.name else "") + ",",
        f"# written by `torwart-hub site add` on {now:%Y-%m-%d %H:%M} UTC.",
        "#",
        "# BEFORE USE, edit the hardware part (doors, readers); the keys are filled in:",
        f"#   * every door's lock_pin is a PLACEHOLDER: distinct BCM pins ({', '.join(map(str, pins.values()))})",
        "#     were picked only so that this file loads. Set each to the pin its relay is wired to and",
        "#     add contact_pin, exit_pin, buzzer_pin, led_pin where fitted;",
        "#   * add a [[readers]] block per reader (templates at the end).",
        "# Copy this directory to the Pi (e.g. to /etc/torwart/), then check it there with",
        "#   torwart-edge check --config /etc/torwart/site.toml",
        "# firmware_configs/sites/example.toml explains every key.",
        "",
        "[site]",
        _kv("id", site.id),
        _kv("name", site.name or site.id),
        _kv("data_dir", EDGE_DATA_DIR, "SQLite databases; created on first use"),
        _kv("timezone", "Europe/Berlin"),
        "",
        "[policy]",
        _kv("retention_days", retention_days, "the hub's retention, too"),
        _kv("clock_trust", "ntp"),
        "",
        "[hub]",
        _kv("host", broker_host, "the MQTT broker"),
        _kv("port", broker_port),
        _kv("tls", tls),
    ]
    cert = [_kv("ca_file", "ca.crt", "the hub CA"), _kv("cert_file", f"{site.id}.crt", "CN = site id"),
            _kv("key_file", f"{site.id}.key")]
    password = [_kv("username", site.id), _kv("password_file", "mqtt.password")]
    if tls:
        head += [*cert, "# Password login instead of the client certificate:"] + [f"# {x}" for x in password]
    else:
        head += [*password, "# With tls = true, the client certificate instead of the password:"]
        head += [f"# {x}" for x in cert]
    head += [
        _kv("signing_public_key", signing_public_key, "the hub's Ed25519 key"),
        _kv("enroll_public_key", enroll_public_key, "the hub's X25519 key"),
        _kv("cred_key_file", "cred.key", "this site's credential key (chmod 600)"),
    ]
    for room in site.rooms:
        head += ["", "[[rooms]]", _kv("id", room.id), _kv("name", room.name or room.id)]
        if room.capacity is not None:
            head.append(_kv("capacity", room.capacity))
    door_rooms = _door_rooms(site)
    for door in doors:
        head += ["", "[[doors]]", _kv("id", door)]
        if door in door_rooms:
            head.append(_kv("room", door_rooms[door], "a badge here checks into this room"))
        head += [_kv("lock_pin", pins[door], "PLACEHOLDER: the relay's BCM pin"), _kv("fail", "secure"),
                 _kv("unlock_seconds", 5)]
    head += ["", "# Readers: one block per reader, e.g."]
    for door in doors:
        head += ["# [[readers]]", f"# id = \"{door}-rfid\"",
                 '# type = "rdm6300"                 # or "pn532" (port) or "wiegand" (d0_pin, d1_pin)',
                 f"# door = \"{door}\"", '# port = "/dev/serial0"', "#"]
    return "\n".join(head) + "\n"


def _hub_block(site_id: str, name: str, cred_key_value: str, now: dt.datetime) -> str:
    block = "\n".join(["[[sites]]", _kv("id", site_id), _kv("name", name), _kv("cred_key_file", cred_key_value)])
    return (
        f"\n# Site {site_id!r}, added by `torwart-hub site add` on {now:%Y-%m-%d %H:%M} UTC.\n"
        + block
        + "\n# Map its rooms below (platform resources → doors); its site.toml names the same doors:\n"
        + '# [[sites.rooms]]\n# id = "coworking"\n# resources = ["<platform resource id>"]\n# doors = ["main"]\n'
    )


def _validate_text(cfg_path: Path, text: str) -> HubConfig:
    """Load ``text`` as if it were the hub config at ``cfg_path`` (same directory, so
    relative paths resolve alike) without touching the real file."""
    fd, tmp = tempfile.mkstemp(dir=cfg_path.parent, prefix=f".{cfg_path.name}.", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            return config_mod.load(tmp, check_files=False)
        except ConfigError as exc:
            prefix = f"{exc.file}: {exc.key}: " if exc.key else f"{exc.file}: "
            raise ProvisionError(f"{cfg_path}: adding the site would make the config invalid: "
                                 f"{exc.key or '(file)'}: {str(exc).removeprefix(prefix)}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def site_add(
    cfg_path: str | Path, cfg: HubConfig, site_id: str, *, name: str, broker_host: str,
    broker_port: int | None = None, tls: bool, out_dir: str | Path | None = None,
    passwd_file: str | Path | None = None, acl_file: str | Path | None = None,
) -> SiteBundle:
    """Provision site ``site_id``: its credential key (for the hub and for the site), a
    broker password (its line in the broker password file) and a client certificate
    (CN = site id) from the hub CA, the refreshed broker ACL, and a bundle directory
    (default ``{data_dir}/provision/{site}``) holding site.toml, ca.crt, {site}.crt,
    {site}.key, cred.key and mqtt.password.

    A site not yet in the hub config gets a ``[[sites]]`` block appended to it (as text,
    so the admin's comments stay; validated before anything is written). A site already
    declared there whose credential key does not exist yet is provisioned as declared,
    its rooms and doors copied into site.toml. ProvisionError for a bad id, a site that
    is already provisioned, a hub that was not initialised, or a bundle directory that
    is not empty.
    """
    cfg_path = Path(cfg_path)
    try:
        check_ident(site_id, "site id")
    except WireError:
        raise ProvisionError(f"{site_id!r} is not a valid site id: 1-64 characters of a-z, 0-9 and '-', "
                             "starting with a letter or digit") from None
    if site_id == hub_mqtt_user(cfg):
        raise ProvisionError(f"{site_id!r} is the hub's own broker user name: a site with that id would get the "
                             "hub's rights over every site at the broker; pick another id")
    declared = next((s for s in cfg.sites if s.id == site_id), None)
    if declared is not None and Path(declared.cred_key_file).exists():
        raise ProvisionError(f"site {site_id!r} is already configured in {cfg_path} and has its key "
                             f"{declared.cred_key_file}; pick another id")
    hub_key = Path(declared.cred_key_file) if declared else cfg.hub.data_path / "sites" / site_id / "cred.key"
    if declared is None and hub_key.exists():
        raise ProvisionError(f"{hub_key} exists although site {site_id!r} is not configured (a removed site?); "
                             "move it away first")
    out = Path(out_dir) if out_dir is not None else cfg.hub.data_path / "provision" / site_id
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProvisionError(f"bundle directory {out} exists and is not empty; remove it or pass another --out")
    signing = signing_key_from_seed(_require_key(Path(cfg.hub.signing_key_file), "signing key"))
    enroll = X25519PrivateKey.from_private_bytes(_require_key(enroll_key_path(cfg), "enrollment key"))
    ca_cert, ca_key = ca_paths(cfg)
    if not (ca_cert.exists() and ca_key.exists()):
        raise ProvisionError(f"no CA at {ca_cert} (run `torwart-hub init` first)")
    ca = pki.load(ca_cert, ca_key)
    now = dt.datetime.now(dt.UTC)
    port = broker_port if broker_port is not None else (8883 if tls else 1883)

    # Everything that can be refused is checked before the first file is written.
    original = cfg_path.read_text(encoding="utf-8")
    appended = declared is None
    if appended:
        cfg_dir = cfg_path.resolve().parent
        key_value = str(hub_key.relative_to(cfg_dir)) if hub_key.is_relative_to(cfg_dir) else str(hub_key)
        new_text = original + ("" if original.endswith("\n") else "\n") + _hub_block(site_id, name, key_value, now)
        new_cfg = _validate_text(cfg_path, new_text)
    else:
        new_text, new_cfg = original, cfg
    site = new_cfg.site(site_id)
    site_toml = edge_config_text(
        site, signing_public_key=public_key_b64(signing), enroll_public_key=public_key_b64(enroll),
        broker_host=broker_host, broker_port=port, tls=tls, retention_days=cfg.hub.retention_days, now=now,
    )

    cred_key = new_key()
    password = secrets.token_urlsafe(24)
    client = pki.issue(ca, site_id)
    files = broker_files(cfg, passwd_file, acl_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{site_id}-bundle-"))
    wrote_hub_key = False
    try:
        write_key_file(tmp / "cred.key", cred_key)
        _write_file(tmp / "mqtt.password", (password + "\n").encode(), like_existing=False)
        _write_file(tmp / "ca.crt", ca.cert_pem(), mode=0o644, like_existing=False)
        client.write(tmp / f"{site_id}.crt", tmp / f"{site_id}.key")
        _write_file(tmp / "site.toml", site_toml.encode(), mode=0o644, like_existing=False)
        write_key_file(hub_key, cred_key)
        wrote_hub_key = True
        set_broker_password(files.passwd, site_id, password)
        write_acl(cfg, files.acl)
        if appended:
            if cfg_path.read_text(encoding="utf-8") != original:
                raise ProvisionError(f"{cfg_path} changed while the site was being added; run again")
            with cfg_path.open("a", encoding="utf-8") as f:
                f.write(new_text[len(original):])
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        for p in sorted(tmp.glob("*")):
            p.unlink()
        tmp.rmdir()
        if wrote_hub_key:
            hub_key.unlink(missing_ok=True)
        raise
    out.chmod(0o700)
    log.info("site %s provisioned: bundle in %s%s", site_id, out, ", added to the hub config" if appended else "")
    names = ("site.toml", "ca.crt", f"{site_id}.crt", f"{site_id}.key", "cred.key", "mqtt.password")
    return SiteBundle(site_id=site_id, dir=out, site_config=out / "site.toml", files=tuple(out / n for n in names),
                      hub_cred_key_file=hub_key, broker=files, appended=appended, tls=tls,
                      config=config_mod.load(cfg_path, check_files=False))
