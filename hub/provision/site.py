"""Provisioning a new site (``torwart-hub site add``): its credential key, broker login,
client certificate, the refreshed ACL, and the bundle of files the Pi needs (site.toml and
its keys). The hub's own keys, the CA and the file helpers are in hub/provision/hub_init.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire import configfile
from wire.errors import WireError
from wire.keys import new_key, public_key_b64, signing_key_from_seed, write_key_file
from wire.topics import check_ident

from .. import config as config_mod
from ..config import HubConfig, SiteConfig
from ..errors import ConfigError
from . import pki
from .hub_init import (
    EDGE_DATA_DIR,
    PLACEHOLDER_PINS,
    BrokerFiles,
    ProvisionError,
    broker_files,
    ca_paths,
    enroll_key_path,
    hub_mqtt_user,
    require_key,
    set_broker_password,
    write_acl,
    write_file_atomic,
)

log = logging.getLogger(__name__)


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


def _check_new_site_id(cfg: HubConfig, site_id: str) -> None:
    """ProvisionError unless ``site_id`` is a valid id that is not the hub's own broker user."""
    try:
        check_ident(site_id, "site id")
    except WireError:
        raise ProvisionError(f"{site_id!r} is not a valid site id: 1-64 characters of a-z, 0-9 and '-', "
                             "starting with a letter or digit") from None
    if site_id == hub_mqtt_user(cfg):
        raise ProvisionError(f"{site_id!r} is the hub's own broker user name: a site with that id would get the "
                             "hub's rights over every site at the broker; pick another id")


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
    _check_new_site_id(cfg, site_id)
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
    signing = signing_key_from_seed(require_key(Path(cfg.hub.signing_key_file), "signing key"))
    enroll = X25519PrivateKey.from_private_bytes(require_key(enroll_key_path(cfg), "enrollment key"))
    ca_cert, ca_key = ca_paths(cfg)
    if not (ca_cert.exists() and ca_key.exists()):
        raise ProvisionError(f"no CA at {ca_cert} (run `torwart-hub init` first)")
    ca = pki.load(ca_cert, ca_key)
    now = dt.datetime.now(dt.UTC)
    port = configfile.broker_port(broker_port, tls)

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
        write_file_atomic(tmp / "mqtt.password", (password + "\n").encode(), like_existing=False)
        write_file_atomic(tmp / "ca.crt", ca.cert_pem(), mode=0o644, like_existing=False)
        client.write(tmp / f"{site_id}.crt", tmp / f"{site_id}.key")
        write_file_atomic(tmp / "site.toml", site_toml.encode(), mode=0o644, like_existing=False)
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


def site_declare(cfg_path: str | Path, cfg: HubConfig, site_id: str, *, name: str) -> tuple[HubConfig, bool]:
    """The hub's half of a site that will join by code (``torwart-hub site add`` without
    ``--bundle``): its ``[[sites]]`` block appended to the hub config (unless declared there
    already) and the hub's copy of its credential key. Nothing for the Pi is written: it makes
    its own key pair and gets the rest when it joins. Returns (the reloaded config, whether the
    block was appended). ProvisionError as ``site_add``."""
    cfg_path = Path(cfg_path)
    _check_new_site_id(cfg, site_id)
    declared = next((s for s in cfg.sites if s.id == site_id), None)
    if declared is not None and Path(declared.cred_key_file).exists():
        raise ProvisionError(f"site {site_id!r} is already configured in {cfg_path} and has its key "
                             f"{declared.cred_key_file}; pick another id (a new join code: "
                             f"torwart-hub site join-code {site_id})")
    hub_key = Path(declared.cred_key_file) if declared else cfg.hub.data_path / "sites" / site_id / "cred.key"
    if declared is None and hub_key.exists():
        raise ProvisionError(f"{hub_key} exists although site {site_id!r} is not configured (a removed site?); "
                             "move it away first")
    now = dt.datetime.now(dt.UTC)
    original = cfg_path.read_text(encoding="utf-8")
    new_text = original
    if declared is None:
        cfg_dir = cfg_path.resolve().parent
        key_value = str(hub_key.relative_to(cfg_dir)) if hub_key.is_relative_to(cfg_dir) else str(hub_key)
        new_text = original + ("" if original.endswith("\n") else "\n") + _hub_block(site_id, name, key_value, now)
        _validate_text(cfg_path, new_text)
    write_key_file(hub_key, new_key())
    try:
        if declared is None:
            if cfg_path.read_text(encoding="utf-8") != original:
                raise ProvisionError(f"{cfg_path} changed while the site was being added; run again")
            with cfg_path.open("a", encoding="utf-8") as f:
                f.write(new_text[len(original):])
    except BaseException:
        hub_key.unlink(missing_ok=True)
        raise
    log.info("site %s declared for joining%s", site_id, ", added to the hub config" if declared is None else "")
    return config_mod.load(cfg_path, check_files=False), declared is None
