"""The records of the hub's alert queue (hub/alerts; the SQLite side: store/sqlite/alerts.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutMail:
    """One recipient's message, to be queued with the alert decision that makes it.
    ``channel`` says how it goes out: ``mail`` (``recipient`` an address) or ``webhook``
    (``recipient`` the URL, ``body`` the JSON document, ``subject`` its ``event``)."""

    recipient: str
    subject: str
    body: str
    channel: str = "mail"


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
    """A queued message: ``what`` is ``opened`` or ``resolved``; ``state`` ``pending`` or
    ``sent``; ``last_error`` the last failed try's (shown while it is pending)."""

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
    #: How it goes out: ``mail`` or ``webhook`` (``OutMail.channel``).
    channel: str = "mail"
