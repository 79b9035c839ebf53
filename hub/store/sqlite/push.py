"""Web Push subscriptions in the hub's SQLite store (``push_subscriptions``): one row per
browser endpoint, owned by a dashboard user (deleted with the user)."""

from __future__ import annotations

import sqlite3

from ..push import PushSubscriptionRow
from ..types import StoreError
from .base import SqliteBase

_COLS = "id, user_name, endpoint, p256dh, auth, created_at, last_ok, last_error"


def _row(r: sqlite3.Row) -> PushSubscriptionRow:
    return PushSubscriptionRow(id=r["id"], user_name=r["user_name"], endpoint=r["endpoint"], p256dh=r["p256dh"],
                               auth=r["auth"], created_at=r["created_at"], last_ok=r["last_ok"],
                               last_error=r["last_error"])


class PushMixin(SqliteBase):
    """Web Push subscriptions."""

    def add_push_subscription(self, user_name: str, endpoint: str, p256dh: str, auth: str, *,
                              now: float) -> PushSubscriptionRow:
        """Keep ``endpoint`` for ``user_name``; a browser that subscribes again (new keys)
        or for another user replaces its row. StoreError if there is no such user."""
        with self._write() as c:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (user_name,)).fetchone() is None:
                raise StoreError(f"no dashboard user {user_name!r}")
            row = c.execute(
                f"INSERT INTO push_subscriptions (user_name, endpoint, p256dh, auth, created_at) "  # noqa: S608
                f"VALUES (?, ?, ?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET user_name = excluded.user_name, "
                f"p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at, "
                f"last_ok = NULL, last_error = NULL RETURNING {_COLS}",
                (user_name, endpoint, p256dh, auth, now)).fetchone()
        return _row(row)

    def push_subscriptions(self, user_name: str | None = None) -> list[PushSubscriptionRow]:
        """Every subscription (of ``user_name``), oldest first."""
        with self._read() as c:
            if user_name is None:
                rows = c.execute(f"SELECT {_COLS} FROM push_subscriptions ORDER BY id").fetchall()  # noqa: S608
            else:
                rows = c.execute(f"SELECT {_COLS} FROM push_subscriptions WHERE user_name = ? "  # noqa: S608
                                 "ORDER BY id", (user_name,)).fetchall()
        return [_row(r) for r in rows]

    def remove_push_subscription(self, endpoint: str, user_name: str | None = None) -> bool:
        """Forget ``endpoint`` (only if ``user_name``'s, when given); whether it was there."""
        with self._write() as c:
            if user_name is None:
                cur = c.execute("DELETE FROM push_subscriptions WHERE endpoint = ?", (endpoint,))
            else:
                cur = c.execute("DELETE FROM push_subscriptions WHERE endpoint = ? AND user_name = ?",
                                (endpoint, user_name))
            return cur.rowcount > 0

    def push_delivered(self, endpoint: str, *, now: float, error: str | None = None) -> None:
        """Record the push service's answer: taken (``error`` None) or the failure."""
        with self._write() as c:
            if error is None:
                c.execute("UPDATE push_subscriptions SET last_ok = ?, last_error = NULL WHERE endpoint = ?",
                          (now, endpoint))
            else:
                c.execute("UPDATE push_subscriptions SET last_error = ? WHERE endpoint = ?", (error[:300], endpoint))
