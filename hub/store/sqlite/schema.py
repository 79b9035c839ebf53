"""The SQLite side of the hub's store: connection, transactions, schema and migrations.

``SqliteBase`` opens the database in WAL mode with ``synchronous = FULL`` (an ack tells a
site its events are stored, and a cache version once published must never come back
with other contents after a power cut), and brings the schema up to date: migrations are
numbered functions, applied in order inside one ``BEGIN IMMEDIATE`` transaction each,
and the ``schema_version`` table records the last one applied. Two processes opening the
same file at once serialize on that lock; the second finds nothing left to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from sqlite_utils import Database

from ..types import StoreError

log = logging.getLogger(__name__)

Migration = Callable[[Database], None]


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


#: Migration n (1-based) brings the schema from version n-1 to n. Append; never edit.
MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4, _v5, _booking_versions_at_full_precision,
                               _webhook_signatures, _event_streams, _site_refusals, _feedback_queue]


def _keep_private(path: Path) -> None:
    """The store holds enrolled credentials and booking PINs: create it 0600 (SQLite would
    use the umask, typically 0644, and its WAL files follow the database's mode), and take
    group and other access away from a store an older version created so. The data
    directory may be open to the broker's group (torwart-hub.service: 0710).

    An existing store is never opened here: closing any descriptor of the database file
    drops every POSIX lock this process holds on it, so a second store opened beside a
    running one (another thread's) would let another process's last close take the
    running one's WAL away (SQLite then deletes the -wal and -shm files under it)."""
    try:
        if not path.exists():
            with contextlib.suppress(FileExistsError):  # created by another process just now
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p.exists() and (mode := stat.S_IMODE(p.stat().st_mode)) & 0o077:
                os.chmod(p, 0o600)
                log.warning("%s was readable by group or others (mode %04o); made it 0600", p, mode)
    except PermissionError as exc:
        log.warning("cannot make the hub store private: %s", exc)


class SqliteBase:
    """Connection and transaction helpers shared by the store's parts.

    A connection belongs to the thread that opened it (sqlite3 refuses use from another
    thread): each thread opens its own store on the same file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _keep_private(self.path)
        # isolation_level=None: the driver opens no implicit transactions, so every
        # transaction is the explicit BEGIN of _write()/_read().
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self._conn = conn
        self.db = Database(conn, execute_plugins=False)
        self.db.enable_wal()
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: take the write lock before reading,
        so read-modify-write is safe across processes); a savepoint when nested."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                raise
            conn.execute("RELEASE nested")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries see one snapshot."""
        conn = self._conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def schema_version(self) -> int:
        with self._read() as c:
            row = c.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        with self._write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            current = int(row[0]) if row else 0
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: schema version {current} is newer than this hub ({len(MIGRATIONS)})"
                )
            for n in range(current + 1, len(MIGRATIONS) + 1):
                log.info("store %s: migrating schema to version %d", self.path, n)
                MIGRATIONS[n - 1](self.db)
                c.execute("UPDATE schema_version SET version = ?", (n,))
