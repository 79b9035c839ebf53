"""The records of the hub's alert queue and the users' alert settings (hub/alerts; the
SQLite side: store/sqlite/alerts.py and store/sqlite/alertprefs.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutMail:
    """One recipient's message, to be queued with the alert decision that makes it;
    ``not_before``: held back until then (a user's quiet hours), None: at once.
    ``channel`` says how it goes out: ``mail`` (``recipient`` an address), ``webhook``
    (``recipient`` the URL, ``body`` the JSON document, ``subject`` its ``event``) or
    ``push`` (``recipient`` a browser's push endpoint, ``body`` the notification's JSON)."""

    recipient: str
    subject: str
    body: str
    not_before: float | None = None
    channel: str = "mail"


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One occurrence of an alert: (site, kind, subject) from ``opened_at`` until resolved.
    ``acked_by``/``acked_at``: who acknowledged it and when (None: nobody yet);
    ``reminders``: reminders queued so far; ``escalated_at``: when it went to the admins."""

    id: int
    site_id: str
    kind: str
    #: The door or reader it is about; "" for the site as a whole.
    subject: str
    opened_at: float
    resolved_at: float | None
    detail: str | None
    acked_at: float | None = None
    acked_by: str | None = None
    reminders: int = 0
    escalated_at: float | None = None
    #: The hub's time of opening (reminders count from it); ``opened_at`` is the occurrence's.
    raised_at: float | None = None


@dataclass(frozen=True, slots=True)
class AlertMail:
    """A queued message: ``what`` is ``opened``, ``resolved``, ``reminder`` or
    ``escalated``; ``state`` ``pending`` or ``sent``; ``last_error`` the last failed try's
    (shown while it is pending)."""

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
    #: How it goes out: ``mail``, ``webhook`` or ``push`` (``OutMail.channel``).
    channel: str = "mail"


#: The channels a user can choose to hear alerts on (webhooks are the county's, not a user's).
CHANNELS = ("email", "push")
LANGUAGES = ("de", "en")


@dataclass(frozen=True, slots=True)
class AlertPrefs:
    """What one dashboard user hears: ``kinds`` (None: every kind), on ``channels``, in
    ``lang``; non-urgent kinds are held back between ``quiet_start`` and ``quiet_end``
    (minutes after local midnight, Europe/Berlin; the window may cross midnight; None: no
    quiet hours)."""

    user: str
    lang: str = "de"
    kinds: tuple[str, ...] | None = None
    channels: tuple[str, ...] = ("email",)
    quiet_start: int | None = None
    quiet_end: int | None = None
