"""The hub store's SQLite migrations for the fleet's lifecycle (appended to
``schema.MIGRATIONS``): the signing-key ring, join codes, site certificates and states,
the hub's nodes."""

from __future__ import annotations

from sqlite_utils import Database


def _signing_keys(db: Database) -> None:
    """The hub's signing-key ring (hub/keyring.py): ``signing_keys``, one row per key (public
    key and state: next, signing, previous, retired; the seeds are key files), and
    ``key_rollouts``, per site the kids announced in its caches from which version on and the
    kids it trusted before."""
    db.table("signing_keys").create(
        {"kid": str, "public_key": str, "state": str, "created_at": float, "changed_at": float},
        pk="kid", not_null={"public_key", "state", "created_at", "changed_at"},
    )
    db.table("key_rollouts").create(
        {"site_id": str, "keys": str, "version": int, "previous": str, "at": float},
        pk="site_id", not_null={"keys", "version", "previous", "at"},
    )
def _fleet_lifecycle(db: Database) -> None:
    """A site's life (hub/provision/fleet.py): ``join_codes``, one-time codes by their public
    id, only the hash of the secret kept, ``state`` open / used / withdrawn / locked, with the
    broker settings the joining site gets; ``site_certs``, every client certificate the CA
    issued (serial as decimal text, ``how``: join, renew, bundle; ``revoked_at`` when revoked:
    the CRL); ``site_lifecycle``, a site's state when not active (revoked, removed)."""
    db.table("join_codes").create(
        {"id": str, "site_id": str, "secret_hash": str, "created_at": float, "expires_at": float,
         "broker_host": str, "broker_port": int, "tls": int, "attempts": int, "state": str, "used_at": float},
        pk="id", not_null={"site_id", "secret_hash", "created_at", "expires_at", "broker_host", "broker_port",
                           "tls", "attempts", "state"},
        defaults={"attempts": 0},
    )
    db.table("join_codes").create_index(["site_id", "state"])
    db.table("site_certs").create(
        {"serial": str, "site_id": str, "issued_at": float, "not_after": float, "how": str, "revoked_at": float},
        pk="serial", not_null={"site_id", "issued_at", "not_after", "how"},
    )
    db.table("site_certs").create_index(["site_id"])
    db.table("site_lifecycle").create({"site_id": str, "state": str, "changed_at": float}, pk="site_id",
                                      not_null={"state", "changed_at"})
