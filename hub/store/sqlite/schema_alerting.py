"""The hub store's SQLite migrations for alerting (appended to ``schema.MIGRATIONS``):
acknowledgements and per-user settings, the audit trail, the alert queue's channels, Web
Push subscriptions, the alert conditions' start times, the index the repeated-denials
alert reads a site's refusals by."""

from __future__ import annotations

from sqlite_utils import Database


def _alert_acks_and_prefs(db: Database) -> None:
    """Acknowledging, reminding and escalating alerts, and what each user hears:
    ``alerts.acked_at``/``acked_by`` (who acknowledged it, NULL: nobody yet),
    ``alerts.reminders`` (reminders queued), ``alerts.escalated_at`` (sent to the
    admins) and ``alerts.raised_at`` (the hub's time of opening, which reminders count from;
    ``opened_at`` is the site's time of the occurrence); ``alert_prefs``, one row per user
    who changed the defaults: ``lang``,
    ``kinds`` (comma-separated, NULL: every kind), ``channels`` (comma-separated) and the
    quiet hours as minutes after local midnight (NULL: none)."""
    alerts = db.table("alerts")
    alerts.add_column("acked_at", float)
    alerts.add_column("acked_by", str)
    alerts.add_column("reminders", int, not_null_default=0)
    alerts.add_column("escalated_at", float)
    alerts.add_column("raised_at", float)
    db.table("alert_prefs").create(
        {"user_name": str, "lang": str, "kinds": str, "channels": str, "quiet_start": int, "quiet_end": int,
         "updated_at": float},
        pk="user_name", not_null={"lang", "channels", "updated_at"},
    )


def _audit_trail(db: Database) -> None:
    """The audit trail (``hub.core.audit``): one row per act by a person through the
    dashboard, the API or the command line: when (``at``), who and through what (``via``),
    the act, where (site, door, member; NULL when not about one), its parameters
    (``detail``), and its ``outcome`` (``ok``, ``refused``, ``failed``) with the ``reason``.
    Kept for ``retention_days`` like events."""
    db.table("audit").create(
        {"id": int, "at": float, "who": str, "via": str, "act": str, "outcome": str, "site_id": str,
         "door": str, "member_id": str, "detail": str, "reason": str},
        pk="id", not_null={"at", "who", "via", "act", "outcome"},
    )
    db.table("audit").create_index(["at", "id"])
    db.table("audit").create_index(["site_id", "at"])


def _alert_channels(db: Database) -> None:
    """The alert queue carries more than e-mail: ``alert_mails.channel`` says how a row is
    delivered (``mail``: ``recipient`` is an address; ``webhook``: ``recipient`` is the
    URL, ``body`` the JSON document); each channel's worker claims its own rows."""
    db.table("alert_mails").add_column("channel", str, not_null_default="mail")
    db.table("alert_mails").create_index(["channel", "state", "next_try"])


def _push_subscriptions(db: Database) -> None:
    """Web Push (hub/alerts/webpush.py): each browser a dashboard user subscribed, by its
    push service endpoint, with the keys its messages are encrypted to."""
    db.table("push_subscriptions").create(
        {"id": int, "user_name": str, "endpoint": str, "p256dh": str, "auth": str, "created_at": float,
         "last_ok": float, "last_error": str},
        pk="id", not_null={"user_name", "endpoint", "p256dh", "auth", "created_at"},
        foreign_keys=[("user_name", "users", "name")],
    )
    db.execute("CREATE UNIQUE INDEX push_subscriptions_endpoint ON push_subscriptions (endpoint)")
    db.table("push_subscriptions").create_index(["user_name"])


def _alert_conditions(db: Database) -> None:
    """Since when a slow alert's condition holds (``clock_untrusted``, ``cache_stale``), one
    row per (site, kind) while it holds, deleted when it ends: every hub node and every
    restart count the alert's duration from the same start (hub/alerts/conditions.py)."""
    db.table("alert_conditions").create(
        {"site_id": str, "kind": str, "since": float},
        pk=("site_id", "kind"), not_null={"since"},
    )


def _events_by_site_type_received(db: Database) -> None:
    """The index ``events (site_id, type, received_at)``: the repeated-denials alert reads a
    site's ``access.denied`` events received within its window on every refusal and for
    every open ``denials`` alert (``Store.access_denied``, hub/alerts/denials.py), so that
    every hub node counts from the same events."""
    db.table("events").create_index(["site_id", "type", "received_at"])
