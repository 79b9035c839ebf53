"""A county on disk: a hub config and the configs of its sites, with every key generated
(never stored in the repository), for integration tests, benchmarks and the demo."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire.keys import new_key, public_key_b64, write_key_file

from .booking_fake import BookingPlatform
from .broker import Mosquitto
from .postgres import store_url
from .site import SiteFiles, default_layout, write_site
from .util import free_port


def _secret_file(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path.name


@dataclass
class County:
    dir: Path
    hub_config_path: Path
    hub_key: Ed25519PrivateKey
    http_port: int
    admin_token: str
    webhook_secret: bytes
    sites: dict[str, SiteFiles] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        """The hub's store as hub.toml names it (SQLite in the data directory, or PostgreSQL)."""
        from hub import config as hub_config

        return hub_config.load(self.hub_config_path).hub.store_url

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def resource(self, site: str, room: str = "coworking") -> str:
        return f"res-{site}-{room}"


def make_county(
    dir: Path,
    broker: Mosquitto,
    platform: BookingPlatform,
    site_ids: tuple[str, ...] = ("minheim",),
    *,
    layouts: dict[str, dict[str, Any]] | None = None,
    booking: dict[str, Any] | None = None,
    site_policy: dict[str, Any] | None = None,
    mqtt_users: dict[str, str] | None = None,
    store: str | None = None,
) -> County:
    """Write ``dir/hub/hub.toml`` and ``dir/sites/{id}/site.toml`` for each site. Every
    room of a site's layout is bookable as resource ``res-{site}-{room}`` and opens the
    room's door and every door without a room (the entrance). ``mqtt_users`` (user →
    password, with ``hub`` and every site id) makes the hub and the sites log in to a
    broker with passwords. ``store`` (``sqlite``, ``postgres``, a ``postgresql://`` URL; None:
    ``$TORWART_TEST_STORE``) is the hub's store (``testkit.postgres.store_url``)."""
    hub_dir = dir / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True)
    seed = new_key()
    write_key_file(hub_dir / "signing.key", seed, overwrite=True)
    hub_key = Ed25519PrivateKey.from_private_bytes(seed)
    enroll_key = X25519PrivateKey.generate()  # sites seal enrollment reads to it (PROTOCOL.md §3)
    write_key_file(hub_dir / "enroll.key", enroll_key.private_bytes_raw(), overwrite=True)
    admin_token = secrets.token_urlsafe(24)
    webhook_secret = secrets.token_bytes(24).hex().encode()
    port = free_port()
    sites_doc = []
    county = County(dir, hub_dir / "hub.toml", hub_key, port, admin_token, webhook_secret)
    for site_id in site_ids:
        layout = (layouts or {}).get(site_id) or default_layout()
        key = new_key()
        write_key_file(hub_dir / f"{site_id}.cred.key", key, overwrite=True)
        county.sites[site_id] = write_site(dir / "sites" / site_id, site_id, broker, hub_key, layout=layout,
                                           cred_key=key, policy=site_policy,
                                           enroll_public_key=public_key_b64(enroll_key),
                                           password=mqtt_users[site_id] if mqtt_users else None)
        open_doors = [d["id"] for d in layout["doors"] if not d.get("room")]
        rooms = []
        for r in layout.get("rooms", []):
            doors = open_doors + [d["id"] for d in layout["doors"] if d.get("room") == r["id"]]
            rooms.append({"id": r["id"], "name": r.get("name", r["id"]), "capacity": r.get("capacity", 8),
                          "resources": [county.resource(site_id, r["id"])], "doors": doors})
        sites_doc.append({"id": site_id, "name": f"Site {site_id}", "cred_key_file": f"{site_id}.cred.key",
                          "rooms": rooms})
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.hub_port,
                            "client_id": f"torwart-hub-{secrets.token_hex(3)}"}
    if mqtt_users:
        mqtt.update(username="hub", password_file=_secret_file(hub_dir / "mqtt.password", mqtt_users["hub"]))
    doc = {
        "hub": {"data_dir": "data", "signing_key_file": "signing.key", "enroll_key_file": "enroll.key",
                **({"database": url} if (url := store_url(store)) is not None else {})},
        "mqtt": mqtt,
        "http": {"listen": f"127.0.0.1:{port}",
                 "admin_token_file": _secret_file(hub_dir / "admin.token", admin_token)},
        "booking": {"adapter": "rest", "base_url": platform.base_url,
                    "token_file": _secret_file(hub_dir / "platform.token", platform.token),
                    "webhook_secret_file": _secret_file(hub_dir / "webhook.secret", webhook_secret.decode()),
                    "sync_interval_seconds": 3600, "grace_before_minutes": 15, "grace_after_minutes": 15,
                    **(booking or {})},
        "sites": sites_doc,
    }
    county.hub_config_path.write_text(tomli_w.dumps(doc))
    return county


class HubThread:
    """The real hub service on a thread of this process."""

    def __init__(self, county: County, cfg: Any = None, node: str | None = None) -> None:
        """``node``: the hub node's name (default: from its MQTT client id, so that the
        workers of one test, each with its own client id, are nodes of their own)."""
        from hub import config as hub_config
        from hub.service import HubService

        cfg = cfg if cfg is not None else hub_config.load(county.hub_config_path)
        self.service = HubService(cfg, node or f"thread-{cfg.mqtt.client_id}")
        self.thread = threading.Thread(target=self.service.run, name="hub", daemon=True)

    def __enter__(self) -> HubThread:
        self.thread.start()
        if not self.service.ready.wait(30):
            raise RuntimeError("hub did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop()
        self.thread.join(15)
