"""Dashboard users and their login sessions in the hub's SQLite store.

A user has a role (``admin`` or ``caretaker``), the sites it may see (all of them when
``sites`` is NULL) and a password hash made by ``hub.dashboard.passwords``; the store
never sees a password. Sessions are keyed by a hash of the session cookie's value (the
caller hashes), carry their CSRF token and expire at a fixed time; expired sessions are
deleted whenever a new one is created.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence

from ..types import LoginAttempt, SessionRow, StoreError, User, UserExists
from .base import SqliteBase

log = logging.getLogger(__name__)

ROLES = ("admin", "caretaker")
_USER_COLS = "name, role, sites, password_hash, created_at, email"


def _user(row: sqlite3.Row) -> User:
    sites = None if row["sites"] is None else tuple(json.loads(row["sites"]))
    return User(name=row["name"], role=row["role"], sites=sites, password_hash=row["password_hash"],
                created_at=row["created_at"], email=row["email"])


class UsersMixin(SqliteBase):
    """Dashboard accounts and sessions."""

    def add_user(self, name: str, role: str, sites: Sequence[str] | None, password_hash: str,
                 email: str | None = None) -> User:
        """Create a user (``email``: where alerts go; None: none); UserExists if the name is taken."""
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        now = int(time.time())
        doc = None if sites is None else json.dumps(sorted(set(sites)))
        with self._write() as c:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None:
                raise UserExists(f"a user {name!r} exists already")
            c.execute(f"INSERT INTO users ({_USER_COLS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
                      (name, role, doc, password_hash, now, email))
        log.info("dashboard user added (role %s)", role)
        return User(name=name, role=role, sites=None if doc is None else tuple(json.loads(doc)),
                    password_hash=password_hash, created_at=now, email=email)

    def get_user(self, name: str) -> User | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()  # noqa: S608
        return _user(row) if row else None

    def users(self) -> list[User]:
        with self._read() as c:
            rows = c.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name").fetchall()  # noqa: S608
        return [_user(r) for r in rows]

    def set_user_email(self, name: str, email: str | None) -> bool:
        """Set (None: clear) where a user's alerts go; False when there is no such user."""
        with self._write() as c:
            return c.execute("UPDATE users SET email = ? WHERE name = ?", (email, name)).rowcount > 0

    def remove_user(self, name: str) -> bool:
        """Delete a user and every session of it (logged out at once)."""
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            c.execute("DELETE FROM push_subscriptions WHERE user_name = ?", (name,))
            c.execute("DELETE FROM alert_prefs WHERE user_name = ?", (name,))
            return c.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    # --- sessions ----------------------------------------------------------------------------

    def create_session(self, key: str, user: str, csrf: str, *, now: float, expires_at: float) -> None:
        """Store a new session (``key``: a hash of the cookie's value); purge expired ones."""
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO sessions (id_hash, user_name, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                      (key, user, csrf, now, expires_at))

    def get_session(self, key: str, now: float) -> SessionRow | None:
        """The session and its user, or None when unknown or expired at ``now``."""
        cols = ", ".join(f"u.{col.strip()}" for col in _USER_COLS.split(","))
        with self._read() as c:
            row = c.execute(
                f"SELECT {cols}, s.csrf, s.created_at AS session_created_at, s.expires_at FROM sessions s "  # noqa: S608
                "JOIN users u ON u.name = s.user_name WHERE s.id_hash = ? AND s.expires_at > ?", (key, now),
            ).fetchone()
        if row is None:
            return None
        return SessionRow(user=_user(row), csrf=row["csrf"], created_at=row["session_created_at"],
                          expires_at=row["expires_at"])

    def delete_session(self, key: str) -> bool:
        with self._write() as c:
            return c.execute("DELETE FROM sessions WHERE id_hash = ?", (key,)).rowcount > 0

    # --- failed logins (the login rate limit) -----------------------------------------------------

    def recent_login_failures(self, key: str, *, since: float, limit: int) -> list[float]:
        """When ``key`` last failed to log in after ``since``: newest first, at most ``limit``."""
        with self._read() as c:
            rows = c.execute("SELECT at FROM login_failures WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?",
                             (key, since, limit)).fetchall()
        return [r["at"] for r in rows]

    def record_login_failure(self, keys: Sequence[str], *, at: float, forget_before: float) -> None:
        """Record one failed login under each of ``keys``; forget every failure at or before
        ``forget_before`` (outside the limit's window), so the table stays small."""
        with self._write() as c:
            c.execute("DELETE FROM login_failures WHERE at <= ?", (forget_before,))
            c.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)", [(k, at) for k in keys])

    def reserve_login_attempt(self, limits: Sequence[tuple[str, int]], *, at: float,
                              window: float) -> LoginAttempt:
        """Take one attempt from the budget of every ``(key, limit)`` before the password is
        checked, in one write transaction: concurrent logins (threads or processes) cannot
        all see the same unspent budget. When a key already has ``limit`` attempts within
        ``window`` seconds before ``at``, nothing is recorded and ``wait`` says how long until
        its oldest counted attempt leaves the window. Otherwise an attempt is recorded under
        each key; it stays as a failure unless ``release_login_attempt`` removes it after a
        successful login. Attempts outside the window are forgotten."""
        since = at - window
        with self._write() as c:
            c.execute("DELETE FROM login_failures WHERE at <= ?", (since,))
            wait = 0.0
            for key, limit in limits:
                rows = c.execute("SELECT at FROM login_failures WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?",
                                 (key, since, limit)).fetchall()
                if len(rows) >= limit:
                    wait = max(wait, rows[limit - 1]["at"] + window - at, 1e-3)
            if wait > 0:
                return LoginAttempt(wait=wait)
            ids = tuple(int(c.execute("INSERT INTO login_failures (key, at) VALUES (?, ?) RETURNING rowid",
                                      (key, at)).fetchone()["rowid"]) for key, _ in limits)
        return LoginAttempt(wait=None, ids=ids)

    def release_login_attempt(self, ids: Sequence[int]) -> None:
        """Give back attempts reserved by ``reserve_login_attempt`` (the login succeeded)."""
        with self._write() as c:
            c.executemany("DELETE FROM login_failures WHERE rowid = ?", [(i,) for i in ids])

    def clear_login_failures(self, key: str | None = None) -> None:
        """Forget ``key``'s failed logins (after it logged in), or everyone's (None)."""
        with self._write() as c:
            if key is None:
                c.execute("DELETE FROM login_failures")
            else:
                c.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    def active_sessions(self, now: float) -> dict[str, int]:
        """User name → number of unexpired sessions."""
        with self._read() as c:
            rows = c.execute("SELECT user_name, count(*) AS n FROM sessions WHERE expires_at > ? GROUP BY user_name",
                             (now,)).fetchall()
        return {r["user_name"]: r["n"] for r in rows}
