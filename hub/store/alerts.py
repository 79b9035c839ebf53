"""The records of the hub's alert queue (hub/alerts; the SQLite side: store/sqlite/alerts.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutMail:
    """One recipient's message, to be queued with the alert decision that makes it."""

    recipient: str
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One occurrence of an alert: (site, kind, subject) from ``opened_at`` until resolved."""

    id: int
    site_id: str
    kind: str
    #: The door or reader it is about; "" for the site as a whole.
    subject: str
    opened_at: float
    resolved_at: float | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class AlertMail:
    """A queued message: ``what`` is ``opened`` or ``resolved``; ``state`` ``pending`` or ``sent``."""

    id: int
    alert_id: int
    what: str
    recipient: str
    mail_subject: str
    body: str
    state: str
    attempts: int
    next_try: float
    last_error: str | None
    created_at: float
    sent_at: float | None
