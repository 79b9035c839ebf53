"""A county of many sites for the scale benchmark and its test: a broker with a login per
site and the PROTOCOL.md ACL, the hub's configuration (testkit.county), members with one
card each in the hub's store, and bookings spread over the sites' rooms.

Every booking yields exactly one cache entry (its member has one card and no pin, and it
lies inside the hub's cache window), so the entries a site must hold are known here
without asking the hub: ``expected_entries``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wire.keys import public_key_b64

from .booking_fake import BookingPlatform, iso
from .broker import Mosquitto
from .county import County, make_county
from .ingest_bench import Login
from .scale_sites import SimConfig, SiteLogin

#: The hub's sync runs this often in the benchmark (the configuration's minimum), so that a
#: sync starts within seconds of the bookings appearing at the platform.
SYNC_INTERVAL = 5


def site_ids(n: int) -> tuple[str, ...]:
    return tuple(f"s{i:05d}" for i in range(n))


@dataclass
class ScaleCounty:
    county: County
    broker: Mosquitto
    users: dict[str, str]
    sites: tuple[str, ...]

    @property
    def hub_login(self) -> Login:
        return Login.hub(self.broker, self.users["hub"])

    def logins(self) -> list[SiteLogin]:
        return [SiteLogin(s, self.users[s]) for s in self.sites]

    def sim_config(self, **kw: Any) -> SimConfig:
        return SimConfig(self.broker.host, self.broker.port, public_key_b64(self.county.hub_key), **kw)


def make_scale_county(dir: Path, platform: BookingPlatform, n_sites: int) -> ScaleCounty:
    """The broker (not started) and the hub's configuration for ``n_sites`` sites. The hub
    syncs every SYNC_INTERVAL seconds without overlap (each sync reads only what changed
    since the newest booking it saw)."""
    ids = site_ids(n_sites)
    users = {"hub": secrets.token_urlsafe(12), **{s: secrets.token_urlsafe(12) for s in ids}}
    broker = Mosquitto(dir / "broker", users=users)
    county = make_county(dir / "county", broker, platform, ids, mqtt_users=users,
                         booking={"sync_interval_seconds": SYNC_INTERVAL, "overlap_seconds": 0})
    return ScaleCounty(county, broker, users, ids)


def seed_members(store_url: str, members: int) -> None:
    """``members`` members ``m-{i}``, each with one EM4100 card, into the hub's store."""
    from hub.store import open_store

    store = open_store(store_url)
    try:
        store.add_members((f"m-{i}", f"Member {i}", None) for i in range(members))
        store.import_credentials((f"m-{i}", f"em4100:{i:010X}") for i in range(members))
    finally:
        store.close()


def make_bookings(sc: ScaleCounty, n: int, members: int, *, prefix: str = "bk",
                  now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """``n`` confirmed two-hour bookings, round robin over the sites, starting between 12 h
    ago and 5 days ahead (inside the cache window), by members ``m-{i % members}``, last
    changed at times spread over the past hour (as a platform's bookings are: a sync that
    follows reads only the few changed in the newest second again)."""
    real = now or dt.datetime.now(dt.UTC)
    t = real.replace(minute=0, second=0, microsecond=0)
    out = []
    n_sites = len(sc.sites)
    for i in range(n):
        start = t + dt.timedelta(hours=(i // n_sites) % 132 - 12)
        out.append({"id": f"{prefix}-{i}", "resource_id": sc.county.resource(sc.sites[i % n_sites]),
                    "member_id": f"m-{i % members}", "start": iso(start),
                    "end": iso(start + dt.timedelta(hours=2)), "status": "confirmed", "pin": None,
                    "updated_at": iso(real - dt.timedelta(seconds=3600 * (n - i) / n))})
    return out


def expected_entries(sc: ScaleCounty, bookings: list[dict[str, Any]]) -> dict[str, int]:
    """Site → the entries its cache must hold for ``bookings`` (confirmed ones, one each)."""
    by_resource = {sc.county.resource(s): s for s in sc.sites}
    counts = Counter(by_resource[b["resource_id"]] for b in bookings if b["status"] == "confirmed")
    return {s: counts.get(s, 0) for s in sc.sites}


def latest_versions(store_url: str, sites: tuple[str, ...]) -> dict[str, int | None]:
    """Site → the latest cache version the hub's store holds (None: none built yet)."""
    from hub.store import open_store

    store = open_store(store_url)
    try:
        states = {s: store.cache_state(s) for s in sites}
    finally:
        store.close()
    return {s: (st.version if st is not None else None) for s, st in states.items()}


def store_url(sc: ScaleCounty) -> str:
    """The store of the county's hub configuration."""
    from hub import config as hub_config

    return hub_config.load(sc.county.hub_config_path).hub.store_url


def hub_views(store_url: str, sites: tuple[str, ...]) -> dict[str, int | None]:
    """Site → the cache version the hub's store records the site holding (its acks and
    statuses), None when it records none."""
    from hub.store import open_store

    store = open_store(store_url)
    try:
        states = {s: store.site_state(s) for s in sites}
    finally:
        store.close()
    return {s: (st.cache_version if st is not None else None) for s, st in states.items()}
