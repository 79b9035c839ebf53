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

_ALERT_COLS = ("id, site_id, kind, subject, opened_at, resolved_at, detail, acked_at, acked_by, reminders, "
               "escalated_at, raised_at")
_MAIL_COLS = ("id, alert_id, what, recipient, mail_subject, body, state, attempts, next_try, last_error, "
              "created_at, sent_at, channel")


def _alert(row: sqlite3.Row) -> AlertRow:
    return AlertRow(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


def _mail(row: sqlite3.Row) -> AlertMail:
    return AlertMail(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


def _queue(c: sqlite3.Connection, alert_id: int, what: str, mails: Sequence[OutMail], now: float) -> None:
    c.executemany(
        "INSERT INTO alert_mails (alert_id, what, recipient, mail_subject, body, state, attempts, next_try, "
        "created_at, channel) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        [(alert_id, what, m.recipient, m.subject, m.body, now if m.not_before is None else max(now, m.not_before),
          now, m.channel) for m in mails],
    )


class AlertsMixin(SqliteBase):
    """Open and resolve alerts with their messages; the delivery worker's queue."""

    def open_alert(self, site_id: str, kind: str, subject: str, *, at: float, detail: str | None,
                   mails: Sequence[OutMail], now: float | None = None) -> int | None:
        """Open an alert and queue ``mails`` in one transaction; None (nothing changes)
        when one of this (site, kind, subject) is open already. ``now``: the hub's time
        (``raised_at``; default ``at``)."""
        with self._write() as c:
            if c.execute("SELECT 1 FROM alerts WHERE site_id = ? AND kind = ? AND subject = ? "
                         "AND resolved_at IS NULL", (site_id, kind, subject)).fetchone():
                return None
            raised = at if now is None else now
            alert_id = int(c.execute("INSERT INTO alerts (site_id, kind, subject, opened_at, detail, raised_at) "
                                     "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                     (site_id, kind, subject, at, detail, raised)).fetchone()["id"])
            _queue(c, alert_id, "opened", mails, raised)
            return alert_id

    def resolve_alert(self, site_id: str, kind: str, subject: str, *, at: float,
                      mails: Sequence[OutMail], now: float | None = None) -> int | None:
        """Resolve the open alert of (site, kind, subject) and queue ``mails`` in one
        transaction; None (nothing changes) when none is open. ``now``: the hub's time, when
        the messages are due (default ``at``: a site's clock may be ahead)."""
        with self._write() as c:
            row = c.execute("SELECT id FROM alerts WHERE site_id = ? AND kind = ? AND subject = ? "
                            "AND resolved_at IS NULL", (site_id, kind, subject)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE alerts SET resolved_at = ? WHERE id = ?", (at, row["id"]))
            _queue(c, int(row["id"]), "resolved", mails, at if now is None else now)
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

    def claim_alert_mails(self, now: float, *, lease: float, limit: int = 20,
                          channel: str = "mail") -> list[AlertMail]:
        """The pending messages of ``channel`` due at ``now`` (oldest first), claimed for
        ``lease`` seconds."""
        with self._write() as c:
            rows = c.execute(f"SELECT {_MAIL_COLS} FROM alert_mails WHERE channel = ? "  # noqa: S608
                             "AND state = 'pending' AND next_try <= ? ORDER BY next_try, id LIMIT ?",
                             (channel, now, max(0, limit))).fetchall()
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

    def next_alert_mail_due(self, channel: str = "mail") -> float | None:
        with self._read() as c:
            row = c.execute("SELECT MIN(next_try) AS t FROM alert_mails WHERE channel = ? AND state = 'pending'",
                            (channel,)).fetchone()
        return None if row is None or row["t"] is None else float(row["t"])

    # --- the dashboard's list, acknowledging, reminders and escalation -------------------------

    def alerts(self, site_ids: Sequence[str] | None = None, *, kind: str | None = None, open_only: bool = False,
               since: float | None = None, limit: int = 100) -> list[AlertRow]:
        """Alerts newest first: of ``site_ids`` (None: every site), of one ``kind``, only the
        open ones, or those opened or resolved at or after ``since``; at most ``limit``."""
        where, args = ["1 = 1"], []  # type: list[str], list[object]
        if site_ids is not None:
            if not site_ids:
                return []
            where.append(f"site_id IN ({', '.join('?' for _ in site_ids)})")
            args += list(site_ids)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if open_only:
            where.append("resolved_at IS NULL")
        if since is not None:
            where.append("(opened_at >= ? OR resolved_at >= ? OR resolved_at IS NULL)")
            args += [since, since]
        args.append(max(0, limit))
        q = f"SELECT {_ALERT_COLS} FROM alerts WHERE {' AND '.join(where)} ORDER BY opened_at DESC, id DESC LIMIT ?"  # noqa: S608
        with self._read() as c:
            return [_alert(r) for r in c.execute(q, args).fetchall()]

    def get_alert(self, alert_id: int) -> AlertRow | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_ALERT_COLS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()  # noqa: S608
        return None if row is None else _alert(row)

    def ack_alert(self, alert_id: int, *, by: str, at: float) -> AlertRow | None:
        """Record that ``by`` acknowledged the alert at ``at`` (its reminders and escalation
        stop) unless someone did already or it is resolved; the alert as it is then (None:
        no such alert)."""
        with self._write() as c:
            c.execute("UPDATE alerts SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL "
                      "AND resolved_at IS NULL", (at, by, alert_id))
            row = c.execute(f"SELECT {_ALERT_COLS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()  # noqa: S608
        return None if row is None else _alert(row)

    def remind_alert(self, alert_id: int, *, number: int, at: float, mails: Sequence[OutMail]) -> bool:
        """Queue reminder ``number`` (1, 2, ...) with ``mails``, if the alert is open, not
        acknowledged and has had ``number - 1`` reminders; whether it was queued."""
        with self._write() as c:
            n = c.execute("UPDATE alerts SET reminders = ? WHERE id = ? AND reminders = ? AND acked_at IS NULL "
                          "AND resolved_at IS NULL", (number, alert_id, number - 1)).rowcount
            if n == 1:
                _queue(c, alert_id, "reminder", mails, at)
            return n == 1

    def escalate_alert(self, alert_id: int, *, at: float, mails: Sequence[OutMail]) -> bool:
        """Queue the escalation ``mails`` once, if the alert is open and not acknowledged."""
        with self._write() as c:
            n = c.execute("UPDATE alerts SET escalated_at = ? WHERE id = ? AND escalated_at IS NULL "
                          "AND acked_at IS NULL AND resolved_at IS NULL", (at, alert_id)).rowcount
            if n == 1:
                _queue(c, alert_id, "escalated", mails, at)
            return n == 1

    def purge_alerts(self, resolved_before: float) -> int:
        """Delete the alerts resolved before ``resolved_before`` with their messages
        (retention); open ones stay whatever their age. The number of alerts deleted."""
        with self._write() as c:
            c.execute("DELETE FROM alert_mails WHERE alert_id IN (SELECT id FROM alerts WHERE resolved_at < ?)",
                      (resolved_before,))
            return int(c.execute("DELETE FROM alerts WHERE resolved_at < ?", (resolved_before,)).rowcount)
    def failing_alert_deliveries(self, channel: str | None = None, limit: int = 100) -> list[AlertMail]:
        """Pending messages whose last try failed (of one channel, or all), the longest
        failing first: what the dashboard shows as not delivered."""
        q = f"SELECT {_MAIL_COLS} FROM alert_mails WHERE state = 'pending' AND last_error IS NOT NULL"  # noqa: S608
        args: list[object] = []
        if channel is not None:
            q += " AND channel = ?"
            args.append(channel)
        with self._read() as c:
            return [_mail(r) for r in c.execute(q + " ORDER BY created_at, id LIMIT ?",
                                                (*args, max(0, limit))).fetchall()]
