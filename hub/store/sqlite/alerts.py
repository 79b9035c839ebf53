"""Alerts and their durable mail queue in the hub's SQLite store.

An alert is opened and its messages queued in one transaction, and only if no alert of
the same (site, kind, subject) is open (a partial unique index says so too): a second
forced-open of the same door, a resend of the event, another hub process or a restart
queue nothing more. Resolving works the same way. The delivery worker claims due rows
(moving ``next_try`` past a lease) and marks a row sent only after the server took it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from ..alerts import AlertMail, AlertRow, OutMail
from .base import SqliteBase

log = logging.getLogger(__name__)

_ALERT_COLS = "id, site_id, kind, subject, opened_at, resolved_at, detail"
_MAIL_COLS = ("id, alert_id, what, recipient, mail_subject, body, state, attempts, next_try, last_error, "
              "created_at, sent_at")


def _alert(row: sqlite3.Row) -> AlertRow:
    return AlertRow(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


def _mail(row: sqlite3.Row) -> AlertMail:
    return AlertMail(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


def _queue(c: sqlite3.Connection, alert_id: int, what: str, mails: Sequence[OutMail], now: float) -> None:
    c.executemany(
        "INSERT INTO alert_mails (alert_id, what, recipient, mail_subject, body, state, attempts, next_try, "
        "created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
        [(alert_id, what, m.recipient, m.subject, m.body, now, now) for m in mails],
    )


class AlertsMixin(SqliteBase):
    """Open and resolve alerts with their messages; the delivery worker's queue."""

    def open_alert(self, site_id: str, kind: str, subject: str, *, at: float, detail: str | None,
                   mails: Sequence[OutMail]) -> int | None:
        """Open an alert and queue ``mails`` in one transaction; None (nothing changes)
        when one of this (site, kind, subject) is open already."""
        with self._write() as c:
            if c.execute("SELECT 1 FROM alerts WHERE site_id = ? AND kind = ? AND subject = ? "
                         "AND resolved_at IS NULL", (site_id, kind, subject)).fetchone():
                return None
            alert_id = int(c.execute("INSERT INTO alerts (site_id, kind, subject, opened_at, detail) "
                                     "VALUES (?, ?, ?, ?, ?) RETURNING id",
                                     (site_id, kind, subject, at, detail)).fetchone()["id"])
            _queue(c, alert_id, "opened", mails, at)
            return alert_id

    def resolve_alert(self, site_id: str, kind: str, subject: str, *, at: float,
                      mails: Sequence[OutMail]) -> int | None:
        """Resolve the open alert of (site, kind, subject) and queue ``mails`` in one
        transaction; None (nothing changes) when none is open."""
        with self._write() as c:
            row = c.execute("SELECT id FROM alerts WHERE site_id = ? AND kind = ? AND subject = ? "
                            "AND resolved_at IS NULL", (site_id, kind, subject)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE alerts SET resolved_at = ? WHERE id = ?", (at, row["id"]))
            _queue(c, int(row["id"]), "resolved", mails, at)
            return int(row["id"])

    def open_alerts(self, site_id: str | None = None) -> list[AlertRow]:
        """The alerts not resolved (of one site, or all), oldest first."""
        q = f"SELECT {_ALERT_COLS} FROM alerts WHERE resolved_at IS NULL"  # noqa: S608
        args: tuple[str, ...] = ()
        if site_id is not None:
            q, args = q + " AND site_id = ?", (site_id,)
        with self._read() as c:
            return [_alert(r) for r in c.execute(q + " ORDER BY opened_at, id", args).fetchall()]

    def alert_mails(self, alert_id: int | None = None) -> list[AlertMail]:
        """The queued and sent messages (of one alert, or all), in queue order."""
        q = f"SELECT {_MAIL_COLS} FROM alert_mails"  # noqa: S608
        args: tuple[int, ...] = ()
        if alert_id is not None:
            q, args = q + " WHERE alert_id = ?", (alert_id,)
        with self._read() as c:
            return [_mail(r) for r in c.execute(q + " ORDER BY id", args).fetchall()]

    def claim_alert_mails(self, now: float, *, lease: float, limit: int = 20) -> list[AlertMail]:
        """The pending messages due at ``now`` (oldest first), claimed for ``lease`` seconds."""
        with self._write() as c:
            rows = c.execute(f"SELECT {_MAIL_COLS} FROM alert_mails WHERE state = 'pending' "  # noqa: S608
                             "AND next_try <= ? ORDER BY next_try, id LIMIT ?", (now, max(0, limit))).fetchall()
            c.executemany("UPDATE alert_mails SET next_try = ? WHERE id = ?", [(now + lease, r["id"]) for r in rows])
        return [_mail(r) for r in rows]

    def alert_mail_sent(self, mail_id: int, *, now: float) -> None:
        with self._write() as c:
            c.execute("UPDATE alert_mails SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                      "last_error = NULL WHERE id = ?", (now, mail_id))

    def alert_mail_retry(self, mail_id: int, error: str, *, next_try: float) -> None:
        with self._write() as c:
            c.execute("UPDATE alert_mails SET attempts = attempts + 1, last_error = ?, next_try = ? "
                      "WHERE id = ? AND state = 'pending'", (error[:500], next_try, mail_id))

    def next_alert_mail_due(self) -> float | None:
        with self._read() as c:
            row = c.execute("SELECT MIN(next_try) AS t FROM alert_mails WHERE state = 'pending'").fetchone()
        return None if row is None or row["t"] is None else float(row["t"])
