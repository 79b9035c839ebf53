"""The records of Web Push subscriptions (hub/alerts/webpush.py; the SQLite side:
store/sqlite/push.py)."""

from __future__ import annotations

from dataclasses import dataclass

#: Browsers (phones, desktops) one dashboard user may subscribe.
MAX_PER_USER = 10


@dataclass(frozen=True, slots=True)
class PushSubscriptionRow:
    """One browser's subscription, owned by a dashboard user."""

    id: int
    user_name: str
    endpoint: str
    p256dh: str
    auth: str
    created_at: float
    #: When the push service last took a message, and the last failure (for the dashboard).
    last_ok: float | None
    last_error: str | None
