"""The records of a site's life at the hub: join codes, issued certificates, revocation
(the SQLite side: store/sqlite/fleet.py; the acts: hub/provision/fleet.py)."""

from __future__ import annotations

from dataclasses import dataclass

#: A join code's states: usable, used by a join, replaced by a newer code for its site,
#: locked after too many wrong tries.
CODE_STATES = ("open", "used", "withdrawn", "locked")
#: A site's states at the hub besides ``active`` (no row): revoked (no login, nothing
#: published, until reinstated) and removed (revoked, caches gone).
SITE_STATES = ("active", "revoked", "removed")


@dataclass(frozen=True, slots=True)
class JoinCode:
    """A one-time join code: only the hash of its secret is kept (wire.join.code_hash)."""

    id: str
    site_id: str
    secret_hash: str
    created_at: float
    expires_at: float
    broker_host: str
    broker_port: int
    tls: bool
    attempts: int = 0
    state: str = "open"
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class SiteCert:
    """A client certificate the hub's CA issued to a site (``how``: join, renew, bundle)."""

    serial: str
    site_id: str
    issued_at: float
    not_after: float
    how: str
    revoked_at: float | None = None
