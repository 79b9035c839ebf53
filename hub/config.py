"""Hub configuration: one TOML file (``hub.toml``) into frozen structs.

``load()`` validates everything before the hub connects to anything: types, unknown keys,
identifiers, which platform resource opens which room, adapter-specific keys, listen
address, and (with ``check_files``) that key and secret files exist and are readable by
their owner only. Every error is a ConfigError naming the file and the key.

Relative paths resolve against the config file's directory. After ``load()``:

- every site's ``doors`` holds all of its doors (given, or the union of its rooms' doors);
- every room's ``resources`` is non-empty: with the ICS adapter a room without explicit
  resources gets the single synthetic resource ``ics:{site}/{room}``, which the ICS
  adapter puts into the bookings it reads from that room's feed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from msgspec import Meta, Struct, field

from wire.configfile import BrokerSection, load_toml, resolve_path
from wire.keys import read_key_file, signing_key_from_seed

from .alerts.settings import AlertsSection
from .config_sites import RoomConfig, SiteConfig, check_sites
from .errors import ConfigError
from .ha_settings import HomeAssistantSection
from .secrets import check_files, read_secret
from .store.types import StoreError
from .store.url import config_problem as store_config_problem
from .store.url import resolve as resolve_store_url
from .store.url import sqlite_path, with_password_file

if TYPE_CHECKING:
    from .booking.base import AdapterType

HttpUrl = Annotated[str, Meta(pattern=r"^https?://\S+$")]


class HubSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: str
    #: Where the hub keeps its state (``hub.store.url``): ``sqlite:///abs/hub.sqlite3``,
    #: ``sqlite:relative/hub.sqlite3`` or a plain path (both relative to this file's
    #: directory); default: ``{data_dir}/hub.sqlite3``.
    store: str | None = None
    #: The same as ``store`` (e.g. ``postgresql://USER@HOST:PORT/DBNAME``); give one of the two.
    database: str | None = None
    #: The PostgreSQL store's password in an owner-only file (else libpq's PGPASSWORD, ~/.pgpass).
    database_password_file: str | None = None
    #: Standard base64 of the 32-byte Ed25519 seed that signs caches and commands.
    signing_key_file: str
    #: Standard base64 of the 32-byte X25519 private key that opens sealed enrollment reads.
    enroll_key_file: str | None = None
    ca_cert_file: str | None = None
    ca_key_file: str | None = None
    #: A cache expires this long after it was built (expires_at = issued_at + this).
    cache_valid_hours: Annotated[int, Meta(ge=1, le=24 * 366)] = 48
    #: Events (and ended bookings) older than this are purged.
    retention_days: Annotated[int, Meta(ge=1, le=3650)] = 90
    #: A new retained cache.full is published once the changes since the last one exceed
    #: this fraction of its entries.
    full_refresh_fraction: Annotated[float, Meta(gt=0, le=1)] = 0.25
    #: A site's client certificate lasts this long; the site renews it when a third is left.
    site_cert_seconds: Annotated[int, Meta(ge=10, le=3660 * 86400)] = 365 * 86400
    #: Run after the broker's password file or CRL changed, e.g. ["systemctl", "reload", "mosquitto"].
    broker_reload: list[str] = field(default_factory=list)
    #: Several nodes on one store: the leader holds its lease this long and renews it at a
    #: third of it; when it dies another node takes over within this time (hub/leader.py).
    leader_lease_seconds: Annotated[float, Meta(ge=1, le=600)] = 15.0

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def store_url(self) -> str:
        """The hub store's URL for ``hub.store.open_store``."""
        url = self.store if self.store is not None else self.database
        if url is None:
            return str(Path(self.data_dir) / "hub.sqlite3")
        return with_password_file(url, self.database_password_file)

    @property
    def store_path(self) -> Path:
        """The hub's SQLite database file (StoreError if the store is not a SQLite one)."""
        return sqlite_path(self.store_url)


class MqttSection(BrokerSection, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The broker (host, port, tls, username, password_file, ca_file -- None with tls = true:
    the system's trusted CAs --, cert_file, key_file, keepalive: wire.configfile.BrokerSection)
    and the hub's client."""

    client_id: Annotated[str, Meta(min_length=1, max_length=128)] = "torwart-hub"
    #: Subscribe through ``$share/hub/...`` so that several hub workers share the load.
    shared_subscription: bool = False

    @property
    def broker_user(self) -> str:
        """The hub's user name at the broker (its password login or its certificate's CN),
        which the ACL gives every site's topics: no site may have it as its id."""
        return self.username or "hub"


class HttpSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:8080"
    #: A bearer token (in this file, owner-readable only) for API clients, with an admin's
    #: rights; without it the API takes dashboard logins only (``torwart-hub users``).
    admin_token_file: str | None = None
    #: A dashboard login lasts this long (then the user logs in again).
    session_hours: Annotated[int, Meta(ge=1, le=24 * 30)] = 12

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


class BookingSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: A name in ``hub.booking.registry.ADAPTERS`` (checked by ``load``).
    adapter: str
    base_url: HttpUrl | None = None
    token_file: str | None = None
    sync_interval_seconds: Annotated[int, Meta(ge=5, le=86400)] = 60
    grace_before_minutes: Annotated[int, Meta(ge=0, le=1440)] = 15
    grace_after_minutes: Annotated[int, Meta(ge=0, le=1440)] = 15
    horizon_days: Annotated[int, Meta(ge=1, le=366)] = 7
    webhook_secret_file: str | None = None
    #: ``updated_since`` goes back this far before the last successful sync (clock skew).
    overlap_seconds: Annotated[int, Meta(ge=0, le=86400)] = 300
    #: Release a booking nobody checked in to after this many minutes; None: never.
    no_show_minutes: Annotated[int, Meta(ge=1, le=1440)] | None = None
    timeout_seconds: Annotated[float, Meta(gt=0, le=600)] = 20.0
    #: A check-in or release the platform did not take (no answer, 408, 429, 5xx) is sent
    #: again after this many seconds, doubling up to ``retry_max_seconds``; a longer
    #: ``Retry-After`` of the platform wins.
    retry_first_seconds: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    retry_max_seconds: Annotated[float, Meta(gt=0, le=86400)] = 900.0


class HubConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    hub: HubSection
    mqtt: MqttSection
    http: HttpSection = field(default_factory=HttpSection)
    booking: BookingSection
    sites: list[SiteConfig] = field(default_factory=list)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    alerts: AlertsSection | None = None

    def dashboard_url(self) -> str:
        """The dashboard's base URL (no trailing slash) for links in alerts."""
        if self.alerts is not None and self.alerts.dashboard_url is not None:
            return self.alerts.dashboard_url.rstrip("/")
        return f"http://{self.http.listen}"

    def site(self, site_id: str) -> SiteConfig:
        """The site ``site_id``; KeyError if it is not configured."""
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    def resource_map(self) -> dict[str, tuple[str, str]]:
        """Platform resource id → (site id, room id)."""
        return {res: (s.id, r.id) for s in self.sites for r in s.rooms for res in r.resources}

    def no_show_minutes(self, site_id: str) -> int | None:
        own = self.site(site_id).no_show_minutes
        return own if own is not None else self.booking.no_show_minutes


def _split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); ValueError if malformed."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, e.g. [::1]:8080")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    return host, port


def _resolve_store(base: Path, value: str | None) -> str | None:
    """A relative SQLite path (plain or ``sqlite:``) resolves against ``base``; a malformed
    or unknown URL is left for ``load`` to refuse with the key's name."""
    if value is None:
        return None
    try:
        return resolve_store_url(value, base)
    except StoreError:
        return value


def _resolve_paths(cfg: HubConfig, base: Path) -> HubConfig:
    r = resolve_path
    hub = msgspec.structs.replace(
        cfg.hub,
        data_dir=r(base, cfg.hub.data_dir) or "",
        store=_resolve_store(base, cfg.hub.store),
        database=_resolve_store(base, cfg.hub.database),
        database_password_file=r(base, cfg.hub.database_password_file),
        signing_key_file=r(base, cfg.hub.signing_key_file) or "",
        enroll_key_file=r(base, cfg.hub.enroll_key_file),
        ca_cert_file=r(base, cfg.hub.ca_cert_file),
        ca_key_file=r(base, cfg.hub.ca_key_file),
    )
    mqtt = msgspec.structs.replace(
        cfg.mqtt,
        password_file=r(base, cfg.mqtt.password_file),
        ca_file=r(base, cfg.mqtt.ca_file),
        cert_file=r(base, cfg.mqtt.cert_file),
        key_file=r(base, cfg.mqtt.key_file),
    )
    booking = msgspec.structs.replace(
        cfg.booking,
        token_file=r(base, cfg.booking.token_file),
        webhook_secret_file=r(base, cfg.booking.webhook_secret_file),
    )
    http = msgspec.structs.replace(cfg.http, admin_token_file=r(base, cfg.http.admin_token_file))
    if cfg.alerts is not None:
        cfg = msgspec.structs.replace(cfg, alerts=msgspec.structs.replace(
            cfg.alerts, smtp_password_file=r(base, cfg.alerts.smtp_password_file),
            webhooks=[msgspec.structs.replace(w, secret_file=r(base, w.secret_file)) for w in cfg.alerts.webhooks]))
    sites = [msgspec.structs.replace(s, cred_key_file=r(base, s.cred_key_file) or "") for s in cfg.sites]
    return msgspec.structs.replace(cfg, hub=hub, mqtt=mqtt, http=http, booking=booking, sites=sites)


def _booking_adapter(cfg: HubConfig, f: str) -> AdapterType:
    """The booking adapter ``cfg`` names; ConfigError (``booking.adapter``) listing the
    known ones if there is none of that name."""
    from .booking.registry import adapter_type  # not at the top: the adapters import this module

    return adapter_type(cfg.booking.adapter, f)


def _check_sites(cfg: HubConfig, f: str) -> HubConfig:
    """Cross-references between sites, rooms, doors and resources; fills defaults."""
    sites = check_sites(cfg.sites, f, broker_user=cfg.mqtt.broker_user, client_id=cfg.mqtt.client_id,
                        room_resource=_booking_adapter(cfg, f).room_resource)
    return msgspec.structs.replace(cfg, sites=sites)


def load(path: str | Path, *, check_files: bool = True) -> HubConfig:
    """Load and validate the hub's config; raise ConfigError(file, key, message).

    ``check_files`` also checks that key and secret files exist, are readable by their
    owner only, and (for 32-byte keys) hold a well-formed key: what the running hub
    needs. Tools that only inspect the config pass False.
    """
    p = Path(path)
    f = str(p)
    cfg = load_toml(p, HubConfig, ConfigError)
    cfg = _resolve_paths(cfg, base := p.resolve().parent)
    adapter = _booking_adapter(cfg, f)

    try:
        _split_listen(cfg.http.listen)
    except ValueError as exc:
        raise ConfigError(f, "http.listen", str(exc)) from None
    if problem := store_config_problem(cfg.hub.store, cfg.hub.database, cfg.hub.database_password_file, base):
        raise ConfigError(f, *problem)
    adapter.check(cfg, f)  # its own keys (rest: base_url, token_file; ics: ics_url)
    if bool(cfg.mqtt.cert_file) != bool(cfg.mqtt.key_file):
        raise ConfigError(f, "mqtt.cert_file", "cert_file and key_file go together")
    if bool(cfg.hub.ca_cert_file) != bool(cfg.hub.ca_key_file):
        raise ConfigError(f, "hub.ca_cert_file", "ca_cert_file and ca_key_file go together")
    if cfg.mqtt.password_file is not None and cfg.mqtt.username is None:
        raise ConfigError(f, "mqtt.username", "password_file needs a username")
    a = cfg.alerts
    if a is not None and a.smtp_password_file is not None and a.smtp_username is None:
        raise ConfigError(f, "alerts.smtp_username", "smtp_password_file needs an smtp_username")
    if a is not None and a.retry_max_seconds < a.retry_first_seconds:
        raise ConfigError(f, "alerts.retry_max_seconds", "must not be less than retry_first_seconds")
    cfg.homeassistant.check(f, [site.id for site in cfg.sites])
    if a is not None and (dup := next((i for i, w in enumerate(a.webhooks) if w.url in
                                       {v.url for v in a.webhooks[:i]}), None)) is not None:
        raise ConfigError(f, f"alerts.webhooks[{dup}].url", "is given twice")
    cfg = _check_sites(cfg, f)
    if check_files:
        _check_files(cfg, f)
    return cfg


def _check_files(cfg: HubConfig, f: str) -> None:
    check_files(f, keys=[
        ("hub.signing_key_file", cfg.hub.signing_key_file),
        ("hub.enroll_key_file", cfg.hub.enroll_key_file),
        *((f"sites[{i}].cred_key_file", s.cred_key_file) for i, s in enumerate(cfg.sites)),
    ], secrets=[
        ("hub.ca_key_file", cfg.hub.ca_key_file),
        ("hub.database_password_file", cfg.hub.database_password_file),
        ("mqtt.password_file", cfg.mqtt.password_file),
        ("mqtt.key_file", cfg.mqtt.key_file),
        ("booking.token_file", cfg.booking.token_file),
        ("booking.webhook_secret_file", cfg.booking.webhook_secret_file),
        ("alerts.smtp_password_file", None if cfg.alerts is None else cfg.alerts.smtp_password_file),
        *((f"alerts.webhooks[{i}].secret_file", w.secret_file)
          for i, w in enumerate(cfg.alerts.webhooks if cfg.alerts else ())),
    ], public=[
        ("hub.ca_cert_file", cfg.hub.ca_cert_file),
        ("mqtt.ca_file", cfg.mqtt.ca_file),
        ("mqtt.cert_file", cfg.mqtt.cert_file),
    ])


def signing_key(cfg: HubConfig) -> Ed25519PrivateKey:
    """The hub's Ed25519 signing key (file checked for permissions)."""
    return signing_key_from_seed(read_key_file(cfg.hub.signing_key_file))


def site_key(cfg: HubConfig, site_id: str) -> bytes:
    """The credential key of site ``site_id`` (file checked for permissions)."""
    return read_key_file(cfg.site(site_id).cred_key_file)


__all__ = ["AlertsSection", "BookingSection", "HomeAssistantSection", "HttpSection", "HubConfig", "HubSection",
           "MqttSection", "RoomConfig", "SiteConfig", "load", "read_secret", "signing_key", "site_key"]
