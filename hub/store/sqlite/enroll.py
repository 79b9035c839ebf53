"""Card enrollments at sites in the hub's SQLite store (table ``enrollments``, migrations 3 and 4).

An enrollment is recorded (``pending``) before the signed ``enroll`` command goes out.
When the site's ``enroll.read`` arrives, the CLI that sent the command and the running
hub may both see it; ``finish_enrollment`` enrolls the card in the same transaction that
moves the enrollment out of ``pending``, so exactly one of them enrolls it and the other
reads the outcome. The credential string itself is never stored here (only in
``credentials``, like any enrolled card).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from ..types import CredentialConflict, Enrollment, InvalidCredential, UnknownMember
from .base import SqliteBase

log = logging.getLogger(__name__)

_COLS = ("command_id, site_id, member_id, reader, created_at, expires_at, status, detail, credential_id, done_at, "
         "seconds, acked_at, ack_error, cache_version")
_FIELDS = tuple(col.strip() for col in _COLS.split(","))
FINAL = ("enrolled", "conflict", "refused", "expired", "cancelled")


def _row(r: sqlite3.Row) -> Enrollment:
    return Enrollment(**{col: r[col] for col in _FIELDS})


class EnrollMixin(SqliteBase):
    """Pending and finished card enrollments (needs ``MembersMixin`` in the same store)."""

    if TYPE_CHECKING:  # provided by MembersMixin, which SqliteStore also inherits
        def _enroll(self, c: sqlite3.Connection, member_id: str, credential: str, label: str | None,
                    where: str = "") -> tuple[int, bool]: ...

    def add_enrollment(self, command_id: str, site_id: str, member_id: str, reader: str, *,
                       created_at: int, expires_at: int, seconds: int | None = None) -> Enrollment:
        """Record a pending enrollment for the command about to be sent (``seconds``: the
        site's window for the card)."""
        with self._write() as c:
            if c.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
                raise UnknownMember(f"no member {member_id!r}")
            c.execute(
                f"INSERT INTO enrollments ({_COLS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, ?, NULL, NULL, NULL)",
                (command_id, site_id, member_id, reader, created_at, expires_at, seconds),
            )
            return self._get(c, command_id)  # type: ignore[return-value]

    def get_enrollment(self, command_id: str) -> Enrollment | None:
        with self._read() as c:
            return self._get(c, command_id)

    def finish_enrollment(self, command_id: str, site_id: str, credential: str, *, now: float,
                          label: str | None = None) -> tuple[Enrollment, bool]:
        """Enroll ``credential`` (read at ``site_id`` for command ``command_id``) to the
        pending enrollment's member, in one transaction; return (the enrollment, whether
        this call finished it). A finished enrollment is returned unchanged, so a second
        process (or a replayed event) enrolls nothing. KeyError if there is no enrollment
        for this command at this site."""
        with self._write() as c:
            row = self._get(c, command_id)
            if row is None or row.site_id != site_id:
                raise KeyError(command_id)
            if row.status != "pending":
                return row, False
            status, detail, cred_id = "enrolled", None, None
            if now > row.expires_at:
                status, detail = "expired", "the card was read after the enrollment had expired"
            else:
                try:
                    cred_id, new = self._enroll(c, row.member_id, credential, label)
                    detail = "new" if new else "already enrolled to this member"
                except CredentialConflict:
                    owner = c.execute("SELECT member_id FROM credentials WHERE credential = ?",
                                      (credential,)).fetchone()
                    status, detail = "conflict", owner["member_id"] if owner else "another member"
                except InvalidCredential:
                    status, detail = "refused", "the site read a credential of no known form"
                except UnknownMember:
                    status, detail = "refused", f"member {row.member_id!r} was removed meanwhile"
            c.execute("UPDATE enrollments SET status = ?, detail = ?, credential_id = ?, done_at = ? "
                      "WHERE command_id = ?", (status, detail, cred_id, now, command_id))
            done = self._get(c, command_id)
        assert done is not None
        log.info("enrollment %s at site %s for member %s: %s", command_id, site_id, row.member_id, status)
        return done, True

    def close_enrollment(self, command_id: str, status: str, detail: str, *, now: float) -> Enrollment | None:
        """Finish a pending enrollment without a card (``refused``, ``expired``,
        ``cancelled``); return it (unchanged if it was no longer pending), None if unknown."""
        if status not in FINAL or status in ("enrolled", "conflict"):
            raise ValueError(f"cannot close an enrollment as {status!r}")
        with self._write() as c:
            c.execute("UPDATE enrollments SET status = ?, detail = ?, done_at = ? "
                      "WHERE command_id = ? AND status = 'pending'", (status, detail, now, command_id))
            return self._get(c, command_id)

    def ack_enrollment(self, command_id: str, site_id: str, error: str | None, *,
                       now: float) -> Enrollment | None:
        """The site acknowledged the enroll command (``error`` None) or refused it with
        ``error``, which also closes a pending enrollment as ``refused``. The first
        acknowledgement counts; None when there is no enrollment of ``site_id`` for it."""
        with self._write() as c:
            row = self._get(c, command_id)
            if row is None or row.site_id != site_id:
                return None
            if row.acked_at is None:
                c.execute("UPDATE enrollments SET acked_at = ?, ack_error = ? WHERE command_id = ?",
                          (now, error, command_id))
            if error is not None:
                c.execute("UPDATE enrollments SET status = 'refused', detail = ?, done_at = ? "
                          "WHERE command_id = ? AND status = 'pending'",
                          (f"refused by the site: {error}", now, command_id))
            return self._get(c, command_id)

    def set_enrollment_cache(self, command_id: str, version: int) -> None:
        """The version of the enrollment's site's cache built with the new card."""
        with self._write() as c:
            c.execute("UPDATE enrollments SET cache_version = ? WHERE command_id = ? AND cache_version IS NULL",
                      (version, command_id))

    def purge_enrollments(self, created_before: int) -> int:
        """Forget enrollments started before ``created_before`` (retention)."""
        with self._write() as c:
            return c.execute("DELETE FROM enrollments WHERE created_at < ?", (created_before,)).rowcount

    @staticmethod
    def _get(c: sqlite3.Connection, command_id: str) -> Enrollment | None:
        r = c.execute(f"SELECT {_COLS} FROM enrollments WHERE command_id = ?", (command_id,)).fetchone()  # noqa: S608
        return _row(r) if r else None
