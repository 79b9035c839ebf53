"""The booking platform's outbound queue and the sites' watch in the hub's SQLite store.

``feedback`` holds each (booking, kind) once: a check-in reported twice (a resend, a
second badge) or a release decided again (a second hub process, a restart) is queued
once, and a delivered release stays as the record that the booking was released. A
delivery worker ``claim_feedback``s due rows (which moves their ``next_try`` past a lease,
so that two hub processes never send the same row at once) and records the outcome.

``site_watch`` keeps per site the time since which the hub has continuously seen it
online and caught up (``clean_since``) and the boot it saw last; hub/feedback.py decides
when it starts and ends.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from ..types import FeedbackItem
from .base import SqliteBase

log = logging.getLogger(__name__)

KINDS = ("check_in", "release")
_COLS = "booking_id, kind, site_id, at, state, attempts, next_try, last_error, created_at, done_at"
_FIELDS = tuple(col.strip() for col in _COLS.split(","))


def _item(row: sqlite3.Row) -> FeedbackItem:
    return FeedbackItem(**{col: row[col] for col in _FIELDS})


class FeedbackMixin(SqliteBase):
    """Check-ins and releases for the platform; the sites' clean-since times."""

    # --- the queue --------------------------------------------------------------------------

    def queue_feedback(self, booking_id: str, kind: str, site_id: str, at: int, *, now: float) -> bool:
        """Queue a check-in or release for delivery now; False (and nothing changes) when
        this booking has one of this kind already, whatever its state."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not booking_id:
            raise ValueError("empty booking id")
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO feedback (booking_id, kind, site_id, at, state, attempts, next_try, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (booking_id, kind) DO NOTHING",
                (booking_id, kind, site_id, int(at), now, now),
            )
            return cur.rowcount > 0

    def claim_feedback(self, now: float, *, lease: float, limit: int = 20) -> list[FeedbackItem]:
        """The pending rows due at ``now`` (oldest due first), claimed for ``lease`` seconds:
        another process sees them due again only if this one records no outcome by then."""
        with self._write() as c:
            rows = c.execute(f"SELECT {_COLS} FROM feedback WHERE state = 'pending' AND next_try <= ? "  # noqa: S608
                             "ORDER BY next_try, created_at LIMIT ?", (now, max(0, limit))).fetchall()
            c.executemany("UPDATE feedback SET next_try = ? WHERE booking_id = ? AND kind = ?",
                          [(now + lease, r["booking_id"], r["kind"]) for r in rows])
        return [_item(r) for r in rows]

    def feedback_delivered(self, booking_id: str, kind: str, *, now: float) -> None:
        """The platform accepted it (2xx)."""
        self._outcome(booking_id, kind, "state = 'delivered', done_at = ?, last_error = NULL", (now,))

    def feedback_retry(self, booking_id: str, kind: str, error: str, *, next_try: float) -> None:
        """It did not go through this time; try again at ``next_try``."""
        self._outcome(booking_id, kind, "next_try = ?, last_error = ?", (next_try, error[:500]))

    def feedback_failed(self, booking_id: str, kind: str, error: str, *, now: float) -> None:
        """The platform refused it for good; it is not sent again."""
        self._outcome(booking_id, kind, "state = 'failed', done_at = ?, last_error = ?", (now, error[:500]))

    def _outcome(self, booking_id: str, kind: str, sets: str, params: tuple[Any, ...]) -> None:
        with self._write() as c:
            c.execute(f"UPDATE feedback SET attempts = attempts + 1, {sets} "  # noqa: S608
                      "WHERE booking_id = ? AND kind = ? AND state = 'pending'", (*params, booking_id, kind))

    def get_feedback(self, booking_id: str, kind: str) -> FeedbackItem | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_COLS} FROM feedback WHERE booking_id = ? AND kind = ?",  # noqa: S608
                            (booking_id, kind)).fetchone()
        return _item(row) if row else None

    def feedback_backlog(self) -> list[FeedbackItem]:
        """Every pending and failed row, failed first, then by creation."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM feedback WHERE state IN ('pending', 'failed') "  # noqa: S608
                             "ORDER BY state = 'pending', created_at, booking_id, kind").fetchall()
        return [_item(r) for r in rows]

    def next_feedback_due(self) -> float | None:
        """The earliest ``next_try`` of a pending row, None when nothing is pending."""
        with self._read() as c:
            row = c.execute("SELECT MIN(next_try) AS due FROM feedback WHERE state = 'pending'").fetchone()
        return None if row is None or row["due"] is None else float(row["due"])

    def purge_feedback(self, created_before: float) -> int:
        """Delete delivered and failed rows created before ``created_before`` (retention);
        pending ones stay until the platform takes them."""
        with self._write() as c:
            return c.execute("DELETE FROM feedback WHERE state != 'pending' AND created_at < ?",
                             (created_before,)).rowcount

    # --- the sites' watch ---------------------------------------------------------------------

    def site_watch(self, site_id: str) -> tuple[float | None, str | None]:
        """(clean_since, the boot last seen) of a site; (None, None) if never watched."""
        with self._read() as c:
            row = c.execute("SELECT clean_since, boot FROM site_watch WHERE site_id = ?", (site_id,)).fetchone()
        return (None, None) if row is None else (row["clean_since"], row["boot"])

    def set_site_watch(self, site_id: str, clean_since: float | None, boot: str | None) -> None:
        with self._write() as c:
            c.execute("INSERT INTO site_watch (site_id, clean_since, boot) VALUES (?, ?, ?) ON CONFLICT (site_id) "
                      "DO UPDATE SET clean_since = excluded.clean_since, boot = excluded.boot",
                      (site_id, clean_since, boot))

    def forget_clean_since(self) -> None:
        """No site is known to be clean (the hub starts: it did not watch while it was down)."""
        with self._write() as c:
            c.execute("UPDATE site_watch SET clean_since = NULL")
