"""The hub store's SQLite schema: its migrations, applied with sqlite-utils ``Migrations``
(as the edge's cache, outbox and state databases are).

``MIGRATIONS`` lists them in order; each is recorded by its function's name in the table
``_sqlite_migrations`` (migration set ``torwart-hub-store``), so a function is never renamed
or edited: a change to the schema is a new function appended to the list. ``migrate`` applies
what is pending inside one ``BEGIN IMMEDIATE`` transaction: two processes opening the same
file at once serialize on that lock, and the second finds nothing left to do.

Stores made before sqlite-utils ``Migrations`` counted the migrations applied in a one-row
table ``schema_version``; ``migrate`` records the first that many of ``MIGRATIONS`` as
applied, drops the table and applies the rest, in the same transaction.
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database, Migrations

from ..types import StoreError
from .schema_alerting import (
    _alert_acks_and_prefs,
    _alert_channels,
    _alert_conditions,
    _audit_trail,
    _events_by_site_type_received,
    _push_subscriptions,
)
from .schema_fleet import _fleet_lifecycle, _signing_keys

log = logging.getLogger(__name__)

Migration = Callable[[Database], None]

#: The name of the hub store's set in ``_sqlite_migrations``.
MIGRATION_SET = "torwart-hub-store"
#: Where stores from before sqlite-utils ``Migrations`` counted the migrations applied.
LEGACY_VERSION_TABLE = "schema_version"


def _v1(db: Database) -> None:
    """The initial schema."""
    db.table("meta").create({"key": str, "value": bytes}, pk="key", not_null={"value"})
    db.table("sites").create(
        {"id": str, "name": str, "doors": str, "active": int},
        pk="id", not_null={"name", "doors", "active"}, defaults={"active": 1},
    )
    db.table("rooms").create(
        {"site_id": str, "id": str, "name": str, "capacity": int, "doors": str},
        pk=("site_id", "id"), not_null={"name", "doors"},
    )
    # One resource opens one room: the primary key enforces what the config validates.
    db.table("room_resources").create(
        {"resource_id": str, "site_id": str, "room_id": str},
        pk="resource_id", not_null={"site_id", "room_id"},
    )
    db.table("room_resources").create_index(["site_id"])
    db.table("members").create(
        {"id": str, "who": str, "display_name": str, "email": str, "created_at": int},
        pk="id", not_null={"who", "display_name", "created_at"},
    )
    db.table("members").create_index(["who"], unique=True)
    db.table("credentials").create(
        {"id": int, "member_id": str, "credential": str, "type": str, "label": str, "created_at": int},
        pk="id", not_null={"member_id", "credential", "type", "created_at"},
    )
    db.table("credentials").create_index(["credential"], unique=True)
    db.table("credentials").create_index(["member_id"])
    db.table("grants").create(
        {"id": int, "member_id": str, "site_id": str, "doors": str, "valid_from": int,
         "valid_until": int, "label": str},
        pk="id", not_null={"member_id", "site_id", "label"},
    )
    db.table("grants").create_index(["site_id"])
    db.table("grants").create_index(["member_id"])
    db.table("bookings").create(
        {"id": str, "resource_id": str, "member_id": str, "start": int, "end": int, "status": str,
         "updated_at": int, "pin": str, "source": str},
        pk="id",
        not_null={"resource_id", "member_id", "start", "end", "status", "updated_at", "source"},
    )
    # Site windows: resource equality, then a range on end (start is filtered after).
    db.table("bookings").create_index(["resource_id", "end"])
    db.table("bookings").create_index(["member_id", "end"])
    db.table("bookings").create_index(["end"])
    db.table("sync_state").create(
        {"source": str, "cursor": str, "last_ok_at": int, "last_error": str, "last_error_at": int,
         "failures": int},
        pk="source", not_null={"failures"}, defaults={"failures": 0},
    )
    db.table("events").create(
        {"site_id": str, "seq": int, "id": str, "type": str, "ts": float, "received_at": float,
         "payload": str},
        pk=("site_id", "seq"), not_null={"id", "type", "ts", "received_at", "payload"},
    )
    db.table("events").create_index(["site_id", "ts"])
    db.table("events").create_index(["type", "ts"])
    db.table("events").create_index(["ts"])
    db.table("events").create_index(["received_at"])
    db.table("site_state").create(
        {"site_id": str, "online": int, "since": float, "last_seen": float, "boot": str,
         "software": str, "cache_version": int, "cache_expires_at": int, "clock_synced": int,
         "outbox_pending": int, "lockdown": int, "status": str, "acked_upto": int,
         "max_seq": int, "gaps": str},
        pk="site_id",
        not_null={"online", "clock_synced", "outbox_pending", "lockdown", "acked_upto", "max_seq", "gaps"},
        defaults={"online": 0, "clock_synced": 0, "outbox_pending": 0, "lockdown": 0,
                  "acked_upto": 0, "max_seq": 0, "gaps": "[]"},
    )
    db.table("door_states").create(
        {"site_id": str, "door": str, "payload": str, "ts": float},
        pk=("site_id", "door"), not_null={"payload", "ts"},
    )
    db.table("occupancy").create(
        {"site_id": str, "payload": str, "ts": float}, pk="site_id", not_null={"payload", "ts"},
    )
    db.table("cache_sites").create(
        {"site_id": str, "version": int, "built_at": int, "n_entries": int, "size": int,
         "retained_version": int, "retained_entries": int},
        pk="site_id", not_null={"version", "built_at", "n_entries", "size"},
    )
    db.table("cache_entries").create(
        {"site_id": str, "id": str, "entry": str}, pk=("site_id", "id"), not_null={"entry"},
    )
    db.table("cache_versions").create(
        {"site_id": str, "version": int, "base_version": int, "built_at": int, "n_entries": int,
         "size": int, "added": str, "changed": str, "removed": str},
        pk=("site_id", "version"),
        not_null={"base_version", "built_at", "n_entries", "size", "added", "changed", "removed"},
    )


def _v2(db: Database) -> None:
    """Dashboard users and their login sessions. A session is stored under a hash of the
    cookie's value, so a copy of the database opens no session."""
    db.table("users").create(
        {"name": str, "role": str, "sites": str, "password_hash": str, "created_at": int},
        pk="name", not_null={"role", "password_hash", "created_at"},
    )
    db.table("sessions").create(
        {"id_hash": str, "user_name": str, "csrf": str, "created_at": float, "expires_at": float},
        pk="id_hash", not_null={"user_name", "csrf", "created_at", "expires_at"},
        foreign_keys=[("user_name", "users", "name")],
    )
    db.table("sessions").create_index(["user_name"])
    db.table("sessions").create_index(["expires_at"])


def _v3(db: Database) -> None:
    """Pending card enrollments at sites: the enroll command's id → the member the card is
    for, so that whichever hub process sees the site's ``enroll.read`` enrolls it, once."""
    db.table("enrollments").create(
        {"command_id": str, "site_id": str, "member_id": str, "reader": str, "created_at": int,
         "expires_at": int, "status": str, "detail": str, "credential_id": int, "done_at": float},
        pk="command_id", not_null={"site_id", "member_id", "reader", "created_at", "expires_at", "status"},
    )
    db.table("enrollments").create_index(["created_at"])


def _v4(db: Database) -> None:
    """What the dashboard shows of an enrollment as it goes: the site's window (``seconds``),
    the site's acknowledgement of the command (``acked_at``; ``ack_error`` when it refused
    it) and the cache version of the enrollment's site built with the new card."""
    t = db.table("enrollments")
    t.add_column("seconds", int)
    t.add_column("acked_at", float)
    t.add_column("ack_error", str)
    t.add_column("cache_version", int)


def _v5(db: Database) -> None:
    """Failed dashboard logins (``key``: ``user:NAME`` or ``ip:ADDRESS``), so that the login
    rate limit survives a hub restart. Rows older than the limit's window are deleted."""
    db.table("login_failures").create({"key": str, "at": float}, not_null={"key", "at"})
    db.table("login_failures").create_index(["key", "at"])
    db.table("login_failures").create_index(["at"])


def _booking_versions_at_full_precision(db: Database) -> None:
    """Bookings keep the platform's ``updated_at`` at full precision (REAL Unix seconds,
    microseconds), so that two versions within one second are ordered (PROTOCOL.md §5)."""
    db.table("bookings").transform(types={"updated_at": float})


def _webhook_signatures(db: Database) -> None:
    """Signatures of accepted booking webhooks (PROTOCOL.md §5) with their signed timestamp,
    so that a replay is refused across hub restarts. Rows whose timestamp is outside the
    replay window (plus a margin) are deleted: the timestamp check refuses those anyway."""
    db.table("webhook_signatures").create(
        {"signature": str, "ts": int, "seen_at": float}, pk="signature", not_null={"ts", "seen_at"})
    db.table("webhook_signatures").create_index(["ts"])


def _event_streams(db: Database) -> None:
    """Event streams (PROTOCOL.md §4: a reinstalled site starts a new stream at seq 1; the
    hub keeps every stream) and messages kept aside.

    - ``events`` is rebuilt with the primary key (site_id, stream, seq); the events stored
      so far get the legacy stream "".
    - ``event_streams`` holds per (site, stream) what ``site_state`` held per site: the
      highest seq stored, the missing ranges and the acknowledged seq, plus ``base`` (seqs
      ≤ it belong to the site's legacy numbering) and when the stream was first and last
      seen. Each site's state so far becomes its legacy stream's.
    - ``site_state`` gains the site's current ``stream`` and counts of events of unknown
      type and of quarantined messages; its acked_upto / max_seq / gaps mirror the current
      stream's.
    - ``event_quarantine`` keeps what came on a site's ``event`` topic that was not an
      event, as it came (truncated), why, and its stream and seq where they were readable.
    """
    db.table("events").add_column("stream", str, not_null_default="")
    db.table("events").transform(
        pk=("site_id", "stream", "seq"),
        column_order=["site_id", "stream", "seq", "id", "type", "ts", "received_at", "payload"],
    )
    db.table("event_streams").create(
        {"site_id": str, "stream": str, "base": int, "acked_upto": int, "max_seq": int, "gaps": str,
         "first_seen": float, "last_seen": float},
        pk=("site_id", "stream"), not_null={"base", "acked_upto", "max_seq", "gaps"},
        defaults={"base": 0, "acked_upto": 0, "max_seq": 0, "gaps": "[]"},
    )
    db.execute(
        "INSERT INTO event_streams (site_id, stream, base, acked_upto, max_seq, gaps, first_seen, last_seen) "
        "SELECT site_id, '', 0, acked_upto, max_seq, gaps, NULL, last_seen FROM site_state "
        "WHERE max_seq > 0 OR acked_upto > 0"
    )
    t = db.table("site_state")
    t.add_column("stream", str, not_null_default="")
    t.add_column("unknown_types", int, not_null_default=0)
    t.add_column("quarantined", int, not_null_default=0)
    db.table("event_quarantine").create(
        {"id": int, "site_id": str, "received_at": float, "stream": str, "seq": int, "why": str,
         "payload": bytes},
        pk="id", not_null={"site_id", "received_at", "why", "payload"},
    )
    db.table("event_quarantine").create_index(["site_id", "id"])
    db.table("event_quarantine").create_index(["site_id", "stream", "seq"])
    db.table("event_quarantine").create_index(["received_at"])


def _site_refusals(db: Database) -> None:
    """Messages the hub refused from a site (too large, an occupancy list longer than the
    room's capacity allows, a cache version the hub never issued), counted per site and
    kind of refusal (``topic:reason``, e.g. ``event:too_large``) with the last one's time
    and detail: shown by ``torwart-hub sites``."""
    db.table("site_refusals").create(
        {"site_id": str, "kind": str, "count": int, "last_at": float, "last_reason": str},
        pk=("site_id", "kind"), not_null={"count", "last_at", "last_reason"}, defaults={"count": 0},
    )


def _feedback_queue(db: Database) -> None:
    """What the hub tells the booking platform (PROTOCOL.md §5), queued durably: one row per
    (booking, kind), ``check_in`` or ``release``, from ``pending`` (retried at ``next_try``)
    to ``delivered`` or ``failed`` (refused for good). A release row is also the record that
    the booking was released, so it is released once across restarts. ``site_watch`` keeps
    per site the time since which the hub has seen it online and caught up without a break
    (``clean_since``, NULL while it is not; the hub clears it when it starts)."""
    db.table("feedback").create(
        {"booking_id": str, "kind": str, "site_id": str, "at": int, "state": str, "attempts": int,
         "next_try": float, "last_error": str, "created_at": float, "done_at": float},
        pk=("booking_id", "kind"),
        not_null={"site_id", "at", "state", "attempts", "next_try", "created_at"},
        defaults={"attempts": 0},
    )
    db.table("feedback").create_index(["state", "next_try"])
    db.table("feedback").create_index(["created_at"])
    db.table("site_watch").create({"site_id": str, "clean_since": float, "boot": str}, pk="site_id")


def _alerts(db: Database) -> None:
    """Alerts by e-mail (hub/alerts): ``users.email`` (NULL: the user hears nothing);
    ``alerts``, one row per occurrence of (site, kind, subject: a door, a reader or "") from
    opened to resolved (at most one open per key: a partial unique index); ``alert_mails``,
    the durable queue of each recipient's message (``opened`` or ``resolved``), from
    ``pending`` (tried again at ``next_try``) to ``sent`` once the SMTP server accepted it."""
    db.table("users").add_column("email", str)
    db.table("alerts").create(
        {"id": int, "site_id": str, "kind": str, "subject": str, "opened_at": float, "resolved_at": float,
         "detail": str},
        pk="id", not_null={"site_id", "kind", "subject", "opened_at"},
    )
    db.execute("CREATE UNIQUE INDEX alerts_open ON alerts (site_id, kind, subject) WHERE resolved_at IS NULL")
    db.table("alerts").create_index(["opened_at"])
    db.table("alert_mails").create(
        {"id": int, "alert_id": int, "what": str, "recipient": str, "mail_subject": str, "body": str,
         "state": str, "attempts": int, "next_try": float, "last_error": str, "created_at": float,
         "sent_at": float},
        pk="id", not_null={"alert_id", "what", "recipient", "mail_subject", "body", "state", "attempts",
                           "next_try", "created_at"},
        defaults={"attempts": 0}, foreign_keys=[("alert_id", "alerts", "id")],
    )
    db.table("alert_mails").create_index(["state", "next_try"])
    db.table("alert_mails").create_index(["alert_id"])


def _nodes(db: Database) -> None:
    """Several hub nodes on one store: each node's heartbeat (``nodes``), the leader's
    lease (``leader_lease``, one row named ``leader``: holder, term, expiry) and the change
    feed (``changes``) through which a node learns what another one stored, for the
    dashboards' live views it serves."""
    db.table("nodes").create(
        {"id": str, "host": str, "pid": int, "version": str, "started_at": float, "last_seen": float,
         "role": str, "instance": str},
        pk="id", not_null={"host", "pid", "version", "started_at", "last_seen", "role", "instance"},
    )
    db.table("leader_lease").create(
        {"name": str, "holder": str, "term": int, "expires_at": float, "acquired_at": float, "renewed_at": float,
         "vacant": float, "previous": str},
        pk="name", not_null={"term", "expires_at", "acquired_at", "renewed_at", "vacant"},
    )
    db.table("changes").create(
        {"id": int, "node": str, "site_id": str, "what": str, "at": float},
        pk="id", not_null={"node", "site_id", "what", "at"},
    )
    db.table("changes").create_index(["at"])


#: The migrations in order. Append; never edit, rename or reorder (a store knows what is
#: applied by the functions' names, an older store by their positions in this list).
MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4, _v5, _booking_versions_at_full_precision,
                               _webhook_signatures, _event_streams, _site_refusals, _feedback_queue,
                               _alerts, _alert_acks_and_prefs, _audit_trail, _alert_channels,
                               _push_subscriptions, _signing_keys, _fleet_lifecycle, _nodes,
                               _alert_conditions, _events_by_site_type_received]


def _migrations() -> Migrations:
    """``MIGRATIONS`` as a sqlite-utils set (built when used, so it is the list as it is)."""
    ms = Migrations(MIGRATION_SET)
    for fn in MIGRATIONS:
        ms(name=fn.__name__)(fn)
    return ms


def applied(db: Database) -> list[str]:
    """The names of the hub store's migrations applied to ``db``, in the order applied."""
    return [a.name for a in Migrations(MIGRATION_SET).applied(db)]


def _adopt_legacy_version(db: Database, path: Path) -> None:
    """A store from before sqlite-utils ``Migrations``: record its first ``schema_version``
    migrations as applied and drop that table (inside the caller's transaction)."""
    if not db[LEGACY_VERSION_TABLE].exists():
        return
    row = db.execute(f"SELECT version FROM {LEGACY_VERSION_TABLE}").fetchone()  # noqa: S608 (a constant)
    version = 0 if row is None else int(row["version"])
    if version > len(MIGRATIONS):
        raise StoreError(f"{path}: schema version {version} is newer than this hub ({len(MIGRATIONS)})")
    _migrations().ensure_migrations_table(db)
    done = set(applied(db))
    at = str(datetime.datetime.now(datetime.UTC))
    db[Migrations.migrations_table].insert_all(  # type: ignore[union-attr]
        {"migration_set": MIGRATION_SET, "name": fn.__name__, "applied_at": at}
        for fn in MIGRATIONS[:version] if fn.__name__ not in done
    )
    db.execute(f"DROP TABLE {LEGACY_VERSION_TABLE}")
    log.info("store %s: schema version %d recorded as sqlite-utils migrations", path, version)


def migrate(conn: sqlite3.Connection, db: Database, path: Path) -> None:
    """Bring the schema of the store at ``path`` up to date in one write transaction;
    StoreError if it has migrations this hub does not know (a newer hub made it)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _adopt_legacy_version(db, path)
        done = applied(db)
        unknown = [name for name in done if name not in {fn.__name__ for fn in MIGRATIONS}]
        if unknown:
            raise StoreError(f"{path}: schema version {len(done)} is newer than this hub ({len(MIGRATIONS)}): "
                             f"it has migrations {', '.join(unknown)}")
        ms = _migrations()
        for m in ms.pending(db):
            log.info("store %s: applying schema migration %s", path, m.name)
        ms.apply(db)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
