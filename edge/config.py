"""Site configuration: TOML (``firmware_configs/sites/*.toml``) into frozen structs.

``load()`` validates everything before the agent touches a pin: types, unknown keys,
identifiers, references between doors, rooms and readers, pins used twice, key files and
keys. Every error is a ConfigError naming the file and the key.

A ``[[readers]]`` entry's keys every reader has (``id``, ``type``, ``door``,
``direction``) are checked here; the rest belong to the reader type and are checked by its
config struct from the ``readers`` package (``readers.registry``), which names the key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta, Struct, field

from readers.config import ReaderConfig
from readers.errors import ReaderConfigError
from readers.registry import config_type
from wire.configfile import BrokerSection, convert, load_toml, resolve_path
from wire.errors import KeyFileError
from wire.fields import Ident
from wire.keys import read_key_file
from wire.private import not_owner_only

from .chrony import DEFAULT_SOCKET
from .errors import ConfigError
from .schedule import parse_days

Pin = int | str  # a BCM number (17) or a gpiozero pin name ("GPIO17", "BOARD11")
Seconds = Annotated[float, Meta(gt=0, le=86400)]


class SiteSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Ident
    data_dir: str
    name: str = ""
    timezone: str = "Europe/Berlin"


class PolicySection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    retention_days: Annotated[int, Meta(ge=1, le=3650)] = 90
    #: "ntp": chrony's verdict (synchronised to an authenticated source) where chronyd runs,
    #: else the kernel's NTP flag; "nts": chrony's verdict only; "system": no NTP (edge/clock.py).
    clock_trust: Literal["ntp", "nts", "system"] = "ntp"
    #: chronyd's command socket, where the agent asks for that verdict.
    chrony_socket: str = DEFAULT_SOCKET
    #: Denial rate limit per reader: a burst of this many denials, then one more per refill period.
    deny_burst: Annotated[int, Meta(ge=1, le=1000)] = 5
    deny_refill_seconds: Seconds = 300.0
    max_envelope_bytes: Annotated[int, Meta(ge=1024, le=256 * 1024 * 1024)] = 16 * 1024 * 1024
    status_interval_seconds: Seconds = 60.0
    #: Unacknowledged events are sent again after this long without an ack.
    resend_seconds: Seconds = 20.0
    #: Everyone still checked in is checked out at this local time every day.
    daily_reset: Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "03:00"


class HubSection(BrokerSection, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The broker (host, port, tls, username, password_file, ca_file, cert_file, key_file,
    keepalive: wire.configfile.BrokerSection) and the hub's keys."""

    signing_public_key: str
    cred_key_file: str
    enroll_public_key: str | None = None
    #: The hub's HTTP side (``torwart-edge join --hub``), where the site renews its certificate.
    url: Annotated[str, Meta(pattern=r"^https?://\S+$")] | None = None
    #: How long the broker keeps this site's session (subscriptions, queued messages) while
    #: it is offline; a longer outage starts afresh with the retained full cache.
    session_expiry: Annotated[int, Meta(ge=0, le=30 * 86400)] = 86400


class RoomSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Ident
    name: str = ""
    capacity: Annotated[int, Meta(ge=0)] | None = None
    #: A second badge at the room's door checks the member out.
    toggle: bool = False


class OfficeHours(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Unlocked on a schedule: ``days`` in cron form ("mon-fri", "sat,sun"), local times."""

    days: str = "mon-fri"
    start: Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    end: Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class DoorSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Ident
    room: Ident | None = None
    lock_pin: Pin
    lock_active_high: bool = True
    unlock_seconds: Annotated[float, Meta(ge=0.5, le=600)] = 5.0
    fail: Literal["secure", "safe"] = "secure"
    contact_pin: Pin | None = None
    #: The contact reads low (closed to ground) while the door is shut (a reed switch to GND).
    contact_closed_low: bool = True
    exit_pin: Pin | None = None
    buzzer_pin: Pin | None = None
    led_pin: Pin | None = None
    held_open_seconds: Seconds = 60.0
    office_hours: list[OfficeHours] = field(default_factory=list)


class _CommonKeys(Struct, frozen=True, kw_only=True):
    """The keys every ``[[readers]]`` entry has, whatever its type."""

    id: Ident
    type: str
    door: Ident
    direction: Literal["in", "out"] = "in"


#: The common keys the reader type's config does not get (it gets ``id`` and the rest).
_EDGE_ONLY = ("type", "door", "direction")


class ReaderSection(Struct, frozen=True, kw_only=True):
    """A ``[[readers]]`` entry: the reader at ``door`` (``direction`` in or out of its room)
    and ``settings``, its type's config (from ``readers.registry``: port, pins, key file, …;
    ``settings.id`` is ``id``), which ``readers.make_reader`` turns into the reader."""

    id: str
    type: str
    door: str
    direction: Literal["in", "out"] = "in"
    settings: ReaderConfig


class EdgeConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    site: SiteSection
    policy: PolicySection = field(default_factory=PolicySection)
    hub: HubSection
    rooms: list[RoomSection] = field(default_factory=list)
    doors: list[DoorSection]
    readers: list[ReaderSection] = field(default_factory=list)

    def door(self, door_id: str) -> DoorSection:
        return next(d for d in self.doors if d.id == door_id)

    def room(self, room_id: str) -> RoomSection:
        return next(r for r in self.rooms if r.id == room_id)

    @property
    def data_path(self) -> Path:
        return Path(self.site.data_dir)


def _is_key(text: str) -> bool:
    """Whether ``text`` is the standard base64 of exactly 32 bytes (a public key), as written."""
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _pin_key(pin: Pin) -> str:
    if isinstance(pin, int):
        return f"GPIO{pin}"
    return pin.upper().replace("BCM", "GPIO")


def load(path: str | Path, *, check_files: bool = True) -> EdgeConfig:
    """Load and validate a site config. ``check_files`` also reads the key files and checks
    the keys (what the agent needs); ``torwart-edge status`` passes False."""
    p = Path(path)
    f = str(p)
    doc = load_toml(p, dict[str, Any], ConfigError)
    # [[readers]] entries are read in two parts (the common keys, the type's own): below.
    raw_readers = convert(doc.pop("readers", []), list[dict[str, Any]], f, ConfigError, at="readers")
    cfg = convert(doc, EdgeConfig, f, ConfigError)
    base = p.resolve().parent

    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(f, key, msg)

    # Paths are relative to the config file.
    hub = msgspec.structs.replace(
        cfg.hub,
        password_file=resolve_path(base, cfg.hub.password_file),
        ca_file=resolve_path(base, cfg.hub.ca_file),
        cert_file=resolve_path(base, cfg.hub.cert_file),
        key_file=resolve_path(base, cfg.hub.key_file),
        cred_key_file=resolve_path(base, cfg.hub.cred_key_file) or "",
    )
    site = msgspec.structs.replace(cfg.site, data_dir=resolve_path(base, cfg.site.data_dir) or "")
    readers = [_reader(entry, f"readers[{i}]", f, base, Path(site.data_dir)) for i, entry in enumerate(raw_readers)]
    cfg = msgspec.structs.replace(cfg, hub=hub, site=site, readers=readers)

    for what, ids in (("rooms", [r.id for r in cfg.rooms]), ("doors", [d.id for d in cfg.doors]),
                      ("readers", [r.id for r in cfg.readers])):
        for i, id_ in enumerate(ids):
            if id_ in ids[:i]:
                raise err(f"{what}[{i}].id", f"{id_!r} is used twice")
    if not cfg.doors:
        raise err("doors", "a site needs at least one door")
    rooms = {r.id for r in cfg.rooms}
    doors = {d.id for d in cfg.doors}
    pins: dict[str, str] = {}

    def claim(pin: Pin | None, key: str) -> None:
        if pin is None:
            return
        k = _pin_key(pin)
        if k in pins:
            raise err(key, f"pin {pin} is already used by {pins[k]}")
        pins[k] = key

    if not Path(cfg.policy.chrony_socket).is_absolute():
        raise err("policy.chrony_socket", f"must be an absolute path (chronyd's command socket, default "
                                          f"{DEFAULT_SOCKET}), not {cfg.policy.chrony_socket!r}")
    try:
        ZoneInfo(cfg.site.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        raise err("site.timezone", f"unknown time zone {cfg.site.timezone!r} (e.g. Europe/Berlin)") from None
    for i, d in enumerate(cfg.doors):
        for j, oh in enumerate(d.office_hours):
            try:
                parse_days(oh.days)
            except ValueError as exc:
                raise err(f"doors[{i}].office_hours[{j}].days", str(exc)) from None
        if d.room is not None and d.room not in rooms:
            raise err(f"doors[{i}].room", f"no room {d.room!r} in [[rooms]]")
        for name in ("lock_pin", "contact_pin", "exit_pin", "buzzer_pin", "led_pin"):
            claim(getattr(d, name), f"doors[{i}].{name}")
    shared: dict[tuple[str, str, Hashable], int] = {}
    for i, r in enumerate(cfg.readers):
        if r.door not in doors:
            raise err(f"readers[{i}].door", f"no door {r.door!r} in [[doors]]")
        for name, pin in r.settings.pins().items():
            claim(pin, f"readers[{i}].{name}")
        for name, (resource, what) in r.settings.shared().items():
            twin = shared.setdefault((r.type, name, resource), i)
            if twin != i:
                raise err(f"readers[{i}].{name}", f"{what} is already used by readers[{twin}]")

    if not _is_key(cfg.hub.signing_public_key):
        raise err("hub.signing_public_key", "must be the standard base64 of the hub's 32-byte Ed25519 public key")
    if cfg.hub.enroll_public_key is not None and not _is_key(cfg.hub.enroll_public_key):
        raise err("hub.enroll_public_key", "must be the standard base64 of a 32-byte X25519 public key")
    if cfg.hub.tls and not cfg.hub.ca_file:
        raise err("hub.ca_file", "tls = true needs the CA certificate that signed the broker's certificate")
    if bool(cfg.hub.cert_file) != bool(cfg.hub.key_file):
        raise err("hub.cert_file", "cert_file and key_file go together")
    if check_files:
        for name in ("password_file", "ca_file", "cert_file", "key_file"):
            value = getattr(cfg.hub, name)
            if value is not None and not Path(value).is_file():
                raise err(f"hub.{name}", f"{value} does not exist")
        # Secrets, like the credential key: readable by their owner only (the hub's config
        # checks its own broker password and TLS key the same way).
        for name in ("password_file", "key_file"):
            value = getattr(cfg.hub, name)
            if value is not None and (why := not_owner_only(value)) is not None:
                raise err(f"hub.{name}", f"{value} is {why}")
        try:
            read_key_file(cfg.hub.cred_key_file)
        except KeyFileError as exc:
            raise err("hub.cred_key_file", str(exc.args[0])) from None
        for i, r in enumerate(cfg.readers):
            try:
                r.settings.check_files()
            except ReaderConfigError as exc:
                raise err(f"readers[{i}].{exc.key}", exc.message) from None
    return cfg


def _reader(entry: dict[str, Any], at: str, f: str, base: Path, data_dir: Path) -> ReaderSection:
    """One ``[[readers]]`` entry: the common keys checked here, the rest by the type's config."""
    keys = convert({k: v for k, v in entry.items() if k in ("id", *_EDGE_ONLY)}, _CommonKeys, f, ConfigError,
                   at=at)
    try:
        kind = config_type(keys.type)
    except ReaderConfigError as exc:
        raise ConfigError(f, f"{at}.{exc.key}", exc.message) from None
    own = {k: v for k, v in entry.items() if k not in _EDGE_ONLY}
    settings = convert(own, kind, f, ConfigError, at=at)

    def resolve(value: str) -> str:
        return resolve_path(base, value) or value

    try:
        settings = settings.settle(resolve=resolve, data_dir=data_dir)
    except ReaderConfigError as exc:
        raise ConfigError(f, f"{at}.{exc.key}", exc.message) from None
    return ReaderSection(id=keys.id, type=keys.type, door=keys.door, direction=keys.direction, settings=settings)


def site_key(cfg: EdgeConfig) -> bytes:
    """The site's credential key (checked for permissions)."""
    return read_key_file(cfg.hub.cred_key_file)


def read_password(cfg: EdgeConfig) -> str | None:
    if cfg.hub.password_file is None:
        return None
    return Path(cfg.hub.password_file).read_text(encoding="utf-8").strip()
