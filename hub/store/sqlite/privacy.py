"""A member's data in the hub's SQLite store, for access (GDPR Art. 15) and erasure (Art. 17).

``member_bookings``, ``member_enrollments`` and ``events_of_who`` read what the hub holds
about a member beyond the member row, credentials and grants; ``erase_member`` deletes
the member, their credentials (PINs included), standing grants, enrollments and the
hub's copies of their bookings (which hold a booking's PIN) in one transaction.
Events stay: they name the member only by pseudonym and age out with retention.
"""

from __future__ import annotations

import json
import logging

from ..types import Enrollment, StoredBooking, StoredEvent
from .base import SqliteBase
from .enroll import _COLS as _ENROLL_COLS
from .enroll import _row as _enrollment
from .members import quoted

log = logging.getLogger(__name__)

_BOOKING_FIELDS = ("id", "resource_id", "member_id", "start", "end", "status", "updated_at", "pin", "source")

#: The tables ``erase_member`` deletes from, by their member column, in this order
#: (members last: the others name it).
ERASED = (("credentials", "member_id"), ("grants", "member_id"), ("enrollments", "member_id"),
          ("bookings", "member_id"), ("members", "id"))


class PrivacyMixin(SqliteBase):
    """What the store holds about one member, and its erasure."""

    def member_bookings(self, member_id: str) -> list[StoredBooking]:
        """The bookings the hub keeps for ``member_id`` (any status), by start."""
        with self._read() as c:
            rows = c.execute(f"SELECT {', '.join(map(quoted, _BOOKING_FIELDS))} FROM bookings "  # noqa: S608
                             "WHERE member_id = ? ORDER BY start, id", (member_id,)).fetchall()
        return [StoredBooking(**{f: r[f] for f in _BOOKING_FIELDS}) for r in rows]

    def member_enrollments(self, member_id: str) -> list[Enrollment]:
        """The card enrollments made for ``member_id``, oldest first."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_ENROLL_COLS} FROM enrollments "  # noqa: S608
                             "WHERE member_id = ? ORDER BY created_at, command_id", (member_id,)).fetchall()
        return [_enrollment(r) for r in rows]

    def events_of_who(self, who: str) -> list[StoredEvent]:
        """The stored events whose ``who`` is the pseudonym ``who``, oldest first."""
        with self._read() as c:
            rows = c.execute("SELECT site_id, seq, id, type, ts, received_at, payload, stream FROM events "
                             "WHERE payload LIKE ? ORDER BY ts, site_id, seq", (f"%{who}%",)).fetchall()
        out = []
        for r in rows:
            try:
                doc = json.loads(r["payload"])
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("who") == who:
                out.append(StoredEvent(site_id=r["site_id"], seq=r["seq"], id=r["id"], type=r["type"], ts=r["ts"],
                                       received_at=r["received_at"], payload=r["payload"], stream=r["stream"]))
        return out

    def erase_member(self, member_id: str) -> dict[str, int] | None:
        """Delete ``member_id`` with their credentials, grants, enrollments and bookings, all
        in one transaction; table → rows deleted, or None (nothing changed) when there is
        no such member."""
        with self._write() as c:
            if c.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
                return None
            done = {table: c.execute(f"DELETE FROM {table} WHERE {col} = ?",  # noqa: S608
                                     (member_id,)).rowcount for table, col in ERASED}
        log.info("member erased: %s", ", ".join(f"{n} {t}" for t, n in done.items()))
        return done
