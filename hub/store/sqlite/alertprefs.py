"""What each dashboard user hears about (hub/alerts): one ``alert_prefs`` row per user
who changed the defaults (every kind, by e-mail, in German, no quiet hours)."""

from __future__ import annotations

import logging
import sqlite3

from ..alerts import AlertPrefs
from .base import SqliteBase

log = logging.getLogger(__name__)

_COLS = "user_name, lang, kinds, channels, quiet_start, quiet_end"


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(x for x in text.split(",") if x)


def _prefs(row: sqlite3.Row) -> AlertPrefs:
    return AlertPrefs(user=row["user_name"], lang=row["lang"], kinds=_split(row["kinds"]),
                      channels=_split(row["channels"]) or (), quiet_start=row["quiet_start"],
                      quiet_end=row["quiet_end"])


class AlertPrefsMixin(SqliteBase):
    """Per-user alert settings."""

    def alert_prefs(self) -> dict[str, AlertPrefs]:
        """The settings of every user who has any, by user name."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM alert_prefs").fetchall()  # noqa: S608
        return {r["user_name"]: _prefs(r) for r in rows}

    def get_alert_prefs(self, user: str) -> AlertPrefs:
        """A user's settings (the defaults when it has none)."""
        with self._read() as c:
            row = c.execute(f"SELECT {_COLS} FROM alert_prefs WHERE user_name = ?", (user,)).fetchone()  # noqa: S608
        return AlertPrefs(user=user) if row is None else _prefs(row)

    def set_alert_prefs(self, prefs: AlertPrefs, *, now: float) -> None:
        """Replace a user's settings (the caller checked them)."""
        kinds = None if prefs.kinds is None else ",".join(prefs.kinds)
        with self._write() as c:
            c.execute(
                "INSERT INTO alert_prefs (user_name, lang, kinds, channels, quiet_start, quiet_end, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_name) DO UPDATE SET lang = excluded.lang, "
                "kinds = excluded.kinds, channels = excluded.channels, quiet_start = excluded.quiet_start, "
                "quiet_end = excluded.quiet_end, updated_at = excluded.updated_at",
                (prefs.user, prefs.lang, kinds, ",".join(prefs.channels), prefs.quiet_start, prefs.quiet_end, now))
        log.info("alert settings of a user changed")
