"""The hub's persistent state in SQLite: ``SqliteStore`` implements ``hub.store.Store``.

Sites and rooms (synced from the config), bookings and the booking sync's state live here
(this module); members, credentials and standing grants in ``members``; events and what
sites report in ``events`` and ``streams``; published cache versions in ``caches``; card
enrollments in ``enroll``; the platform's queue in ``feedback``; refused messages in
``refusals``; dashboard users and sessions in ``users``; several hub nodes (heartbeats,
the leader's lease, the change feed) in ``nodes``; the connection and transactions in
``base``, the schema and its migrations in ``schema``.

Each method is one explicit transaction. A store object belongs to one thread: each
thread (the MQTT link, the booking sync, the web server's workers) opens its own
``SqliteStore`` on the same file; WAL lets readers run beside the one writer.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ..cache_rows import CacheBooking
from ..types import (
    BookingChanges,
    BookingLike,
    RoomRow,
    SiteRow,
    SiteSpec,
    StoredBooking,
    SyncState,
    UnknownSite,
    supersedes,
)
from .alertprefs import AlertPrefsMixin
from .alerts import AlertsMixin
from .audit import AuditMixin
from .caches import CachesMixin
from .conditions import ConditionsMixin
from .denied import DeniedMixin
from .enroll import EnrollMixin
from .events import EventsMixin
from .feedback import FeedbackMixin
from .fleet import FleetMixin
from .keyring import KeyRingMixin
from .members import MembersMixin, chunks, marks, quoted
from .nodes import NodesMixin
from .privacy import PrivacyMixin
from .push import PushMixin
from .refusals import RefusalsMixin
from .users import UsersMixin

log = logging.getLogger(__name__)
# SQL text is only ever built from constant column lists and "?" placeholders; every
# value travels as a parameter (hence the noqa: S608 below).

_BOOKING_FIELDS = ("id", "resource_id", "member_id", "start", "end", "status", "updated_at", "pin", "source")
#: ``end`` is a reserved word in PostgreSQL: the shared SQL quotes it.
_BOOKING_COLS = ", ".join(map(quoted, _BOOKING_FIELDS))
_FIELDS_THAT_MATTER = ("resource_id", "member_id", "start", "end", "status", "pin")
#: A booking's row as a tuple of its columns, in ``_BOOKING_FIELDS``' order.
BookingTuple = tuple[str, str, str, int, int, str, float, str | None, str]
_RESOURCE: Final = 1  # positions in _BOOKING_FIELDS
_STATUS: Final = 5
_UPDATED: Final = 6
_MATTERS = tuple(_BOOKING_FIELDS.index(f) for f in _FIELDS_THAT_MATTER)


def _booking(row: sqlite3.Row, room_id: str | None = None) -> StoredBooking:
    return StoredBooking(**{f: row[f] for f in _BOOKING_FIELDS}, room_id=room_id)


class SqliteStore(MembersMixin, EventsMixin, CachesMixin, UsersMixin, EnrollMixin, RefusalsMixin,
                  FeedbackMixin, AlertsMixin, AlertPrefsMixin, PrivacyMixin, AuditMixin, PushMixin, KeyRingMixin,
                  FleetMixin, NodesMixin, ConditionsMixin, DeniedMixin):
    """The hub's store on one SQLite file (created and migrated on open)."""

    # --- sites and rooms ----------------------------------------------------------------

    def sync_sites(self, sites: Sequence[SiteSpec]) -> None:
        """Make sites, rooms and the resource map exactly the configured ones. Sites no
        longer configured are kept (their events stay until purged) but marked inactive
        and lose their rooms."""
        with self._write() as c:
            c.execute("DELETE FROM room_resources")
            c.execute("UPDATE sites SET active = 0")
            for s in sites:
                self.upsert_site(s.id, s.name, s.doors)
                keep = [r.id for r in s.rooms]
                gone = f" AND id NOT IN ({marks(len(keep))})" if keep else ""  # PostgreSQL refuses "IN ()"
                c.execute(f"DELETE FROM rooms WHERE site_id = ?{gone}", (s.id, *keep))  # noqa: S608
                for r in s.rooms:
                    self.upsert_room(s.id, r.id, name=r.name, capacity=r.capacity, doors=r.doors, resources=r.resources)
            c.execute("DELETE FROM rooms WHERE site_id IN (SELECT id FROM sites WHERE active = 0)")

    def upsert_site(self, site_id: str, name: str, doors: Sequence[str]) -> None:
        """Create or update a site (and mark it active)."""
        with self._write() as c:
            c.execute(
                "INSERT INTO sites (id, name, doors, active) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, doors = excluded.doors, active = 1",
                (site_id, name, json.dumps(list(doors))),
            )

    def upsert_room(
        self, site_id: str, room_id: str, *, name: str, capacity: int | None,
        doors: Sequence[str], resources: Sequence[str],
    ) -> None:
        """Create or update a room and map its resources to it. A resource mapped to
        another room moves here (the config is the truth and validates uniqueness)."""
        with self._write() as c:
            if c.execute("SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone() is None:
                raise UnknownSite(f"no site {site_id!r}")
            c.execute(
                "INSERT INTO rooms (site_id, id, name, capacity, doors) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site_id, id) DO UPDATE SET name = excluded.name, "
                "capacity = excluded.capacity, doors = excluded.doors",
                (site_id, room_id, name, capacity, json.dumps(list(doors))),
            )
            c.execute("DELETE FROM room_resources WHERE site_id = ? AND room_id = ?", (site_id, room_id))
            c.executemany(
                "INSERT INTO room_resources (resource_id, site_id, room_id) VALUES (?, ?, ?) ON CONFLICT "
                "(resource_id) DO UPDATE SET site_id = excluded.site_id, room_id = excluded.room_id",
                [(res, site_id, room_id) for res in resources],
            )

    def sites(self) -> list[SiteRow]:
        with self._read() as c:
            rows = c.execute("SELECT id, name, doors, active FROM sites ORDER BY id").fetchall()
        return [SiteRow(id=r["id"], name=r["name"], doors=tuple(json.loads(r["doors"])), active=bool(r["active"]))
                for r in rows]

    def rooms(self, site_id: str) -> list[RoomRow]:
        with self._read() as c:
            rows = c.execute("SELECT id, name, capacity, doors FROM rooms WHERE site_id = ? ORDER BY id",
                             (site_id,)).fetchall()
            res: dict[str, list[str]] = {}
            for m in c.execute(
                "SELECT resource_id, room_id FROM room_resources WHERE site_id = ? ORDER BY resource_id", (site_id,)
            ):
                res.setdefault(m["room_id"], []).append(m["resource_id"])
        return [RoomRow(site_id=site_id, id=r["id"], name=r["name"], capacity=r["capacity"],
                        doors=tuple(json.loads(r["doors"])), resources=tuple(res.get(r["id"], ()))) for r in rows]

    def room_for_resource(self, resource_id: str) -> tuple[str, str] | None:
        """(site, room) of a platform resource, or None when it is not mapped."""
        with self._read() as c:
            row = c.execute("SELECT site_id, room_id FROM room_resources WHERE resource_id = ?",
                            (resource_id,)).fetchone()
        return (row["site_id"], row["room_id"]) if row else None

    # --- bookings ---------------------------------------------------------------------------------

    def upsert_bookings(self, bookings: Iterable[BookingLike]) -> BookingChanges:
        """Store bookings in one transaction; report which changed.

        A booking counts as changed when it is new or its resource, member, start, end,
        status or pin differ from the stored one; a booking that differs only in
        ``updated_at`` or ``source`` is stored silently, so re-syncing identical data
        triggers no cache rebuild. A booking that does not supersede the stored one
        (``hub.store.supersedes``: an earlier ``updated_at`` at full precision, e.g. a late
        webhook after a newer sync, or an equal one that would undo a cancellation) is
        ignored; so is such a version within ``bookings``."""
        latest: dict[str, BookingTuple] = {}
        for b in bookings:
            row: BookingTuple = (b.id, b.resource_id, b.member_id, int(b.start), int(b.end), b.status,
                                 float(b.updated_at), b.pin, b.source)
            held = latest.get(b.id)
            if held is None or supersedes(row[_UPDATED], row[_STATUS], held[_UPDATED], held[_STATUS]):
                latest[b.id] = row
        changed: list[str] = []
        sites: set[str] = set()
        writes: list[BookingTuple] = []
        with self._write() as c, self._bulk(len(latest)):
            site_of = {r["resource_id"]: r["site_id"]
                       for r in c.execute("SELECT resource_id, site_id FROM room_resources")}
            stored: dict[str, BookingTuple] = {}
            if latest and c.execute("SELECT 1 FROM bookings LIMIT 1").fetchone() is not None:  # else: none stored
                for part in chunks(list(latest)):
                    sql = f"SELECT {_BOOKING_COLS} FROM bookings WHERE id IN ({marks(len(part))})"  # noqa: S608
                    for r in c.execute(sql, tuple(part)):
                        stored[r["id"]] = tuple(r[f] for f in _BOOKING_FIELDS)
            for bid, row in latest.items():
                old = stored.get(bid)
                if old is not None and not supersedes(row[_UPDATED], row[_STATUS], old[_UPDATED], old[_STATUS]):
                    continue
                if old is None or any(row[k] != old[k] for k in _MATTERS):
                    changed.append(bid)
                    for res in (row[_RESOURCE], None if old is None else old[_RESOURCE]):
                        if res in site_of:
                            sites.add(site_of[res])
                elif row == old:
                    continue
                writes.append(row)
            values = ", ".join("?" for _ in _BOOKING_FIELDS)
            c.executemany(
                f"INSERT INTO bookings ({_BOOKING_COLS}) VALUES ({values}) "  # noqa: S608
                "ON CONFLICT (id) DO UPDATE SET resource_id = excluded.resource_id, member_id = excluded.member_id, "
                "start = excluded.start, \"end\" = excluded.\"end\", status = excluded.status, "
                "updated_at = excluded.updated_at, pin = excluded.pin, source = excluded.source",
                writes,
            )
        if changed:
            log.info("bookings: %d changed of %d, sites %s", len(changed), len(latest), ",".join(sorted(sites)))
        return BookingChanges(changed=changed, sites=frozenset(sites))

    def replace_bookings(
        self, source: str, bookings: Iterable[BookingLike], *, window: tuple[int, int] | None = None,
        keep: Iterable[str] = (),
    ) -> BookingChanges:
        """Apply a complete sync result of ``source`` (e.g. every ICS feed read in full) in
        one transaction: upsert ``bookings`` as ``upsert_bookings`` does, then cancel the
        source's confirmed bookings that overlap ``window`` (start inclusive, end exclusive;
        None: all of them) but are neither in ``bookings`` nor in ``keep`` (ids present but
        unreadable this time). A vanished booking that comes back is confirmed again: the
        hub's inferred cancellation is stored with the largest ``updated_at`` below the
        platform's version it was made from, so that very version supersedes it (whereas a
        cancellation the platform sent is never undone by an equal ``updated_at``)."""
        given = list(bookings)
        with self._write() as c:
            up = self.upsert_bookings(given)
            present = {b.id for b in given} | set(keep)
            sql = "SELECT id FROM bookings WHERE source = ? AND status = 'confirmed'"
            params: list[Any] = [source]
            if window is not None:
                sql += ' AND "end" > ? AND start < ?'
                params += list(window)
            # Ids only (a complete sync lists them all again); the few that vanished in full.
            vanished = [r["id"] for r in c.execute(sql, params) if r["id"] not in present]
            rows = []
            for part in chunks(vanished):
                sql = ("SELECT b.id, r.site_id, b.updated_at FROM bookings b LEFT JOIN room_resources r "  # noqa: S608
                       f"ON r.resource_id = b.resource_id WHERE b.id IN ({marks(len(part))})")
                rows += c.execute(sql, tuple(part)).fetchall()
            gone = [(r["id"], r["site_id"]) for r in rows]
            c.executemany("UPDATE bookings SET status = 'cancelled', updated_at = ? WHERE id = ?",
                          [(math.nextafter(float(r["updated_at"]), -math.inf), r["id"]) for r in rows])
        if gone:
            log.info("bookings: %d of source %s vanished from the platform, cancelled", len(gone), source)
        return BookingChanges(changed=up.changed + [bid for bid, _ in gone],
                              sites=up.sites | {site for _, site in gone if site is not None})

    def get_booking(self, booking_id: str) -> StoredBooking | None:
        with self._read() as c:
            sql = f"SELECT {_BOOKING_COLS} FROM bookings WHERE id = ?"  # noqa: S608
            row = c.execute(sql, (booking_id,)).fetchone()
        return _booking(row) if row else None

    def bookings_for_site_window(
        self, site_id: str, t0: int, t1: int, *, status: str | None = None
    ) -> list[StoredBooking]:
        """Bookings of the site's rooms whose [start, end) overlaps [t0, t1), by start;
        only those with ``status`` when given. ``room_id`` is filled in."""
        cols = ", ".join(f"b.{col.strip()}" for col in _BOOKING_COLS.split(","))
        sql = (f"SELECT {cols}, r.room_id FROM room_resources r "  # noqa: S608
               'JOIN bookings b ON b.resource_id = r.resource_id WHERE r.site_id = ? AND b."end" > ? AND b.start < ?')
        params: list[Any] = [site_id, t0, t1]
        if status is not None:
            sql += " AND b.status = ?"
            params.append(status)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY b.start, b.id", params).fetchall()
        return [_booking(r, r["room_id"]) for r in rows]

    def cache_bookings(self, site_id: str, t0: int, t1: int) -> list[CacheBooking]:
        """The confirmed bookings of the site's rooms whose [start, end) overlaps [t0, t1),
        by start and id, with the columns a cache entry needs (``bookings_for_site_window``
        with status ``confirmed``, lean)."""
        sql = ('SELECT b.id, r.room_id, b.member_id, b.start, b."end", b.pin FROM room_resources r '
               'JOIN bookings b ON b.resource_id = r.resource_id WHERE r.site_id = ? AND b."end" > ? '
               "AND b.start < ? AND b.status = 'confirmed' ORDER BY b.start, b.id")
        with self._read():
            return self._tuples(sql, (site_id, t0, t1), CacheBooking)

    def sites_for_member(self, member_id: str, since: int) -> set[str]:
        """Sites whose caches may hold this member: bookings ending after ``since``, grants."""
        with self._read() as c:
            rows = c.execute(
                "SELECT r.site_id FROM bookings b JOIN room_resources r ON r.resource_id = b.resource_id "
                'WHERE b.member_id = ? AND b."end" > ? UNION SELECT site_id FROM grants WHERE member_id = ?',
                (member_id, since, member_id),
            ).fetchall()
        return {r["site_id"] for r in rows}

    def purge_bookings(self, ended_before: int) -> int:
        with self._write() as c:
            return c.execute('DELETE FROM bookings WHERE "end" < ?', (ended_before,)).rowcount

    # --- booking webhooks -------------------------------------------------------------------------

    def remember_webhook_signature(self, signature: str, *, ts: int, at: float, forget_before: int) -> bool:
        """Record an accepted webhook's signature (``ts``: its signed timestamp); False when it
        was recorded before (a replay). Signatures whose timestamp is before
        ``forget_before`` are forgotten first."""
        with self._write() as c:
            c.execute("DELETE FROM webhook_signatures WHERE ts < ?", (forget_before,))
            return c.execute("INSERT INTO webhook_signatures (signature, ts, seen_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (signature) DO NOTHING", (signature, ts, at)).rowcount == 1

    # --- booking sync state -------------------------------------------------------------------------

    def get_sync_state(self, source: str) -> SyncState:
        """The sync state of a source (an adapter, or one ICS feed); empty if never synced."""
        with self._read() as c:
            row = c.execute("SELECT source, cursor, last_ok_at, last_error, last_error_at, failures "
                            "FROM sync_state WHERE source = ?", (source,)).fetchone()
        if row is None:
            return SyncState(source=source)
        return SyncState(source=row["source"], cursor=row["cursor"], last_ok_at=row["last_ok_at"],
                         last_error=row["last_error"], last_error_at=row["last_error_at"], failures=row["failures"])

    def set_sync_state(self, state: SyncState) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO sync_state (source, cursor, last_ok_at, last_error, last_error_at, failures) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
                "last_ok_at = excluded.last_ok_at, last_error = excluded.last_error, "
                "last_error_at = excluded.last_error_at, failures = excluded.failures",
                (state.source, state.cursor, state.last_ok_at, state.last_error, state.last_error_at,
                 state.failures),
            )

    def record_sync_ok(self, source: str, cursor: str | None, at: int) -> SyncState:
        """A successful sync: new cursor, failures reset."""
        state = SyncState(source=source, cursor=cursor, last_ok_at=at, last_error=None, failures=0)
        self.set_sync_state(state)
        return state

    def record_sync_error(self, source: str, error: str, at: int) -> SyncState:
        """A failed sync: the cursor and the last success stay, failures count up."""
        with self._write():
            old = self.get_sync_state(source)
            state = SyncState(source=source, cursor=old.cursor, last_ok_at=old.last_ok_at,
                              last_error=error[:500], last_error_at=at, failures=old.failures + 1)
            self.set_sync_state(state)
        return state

