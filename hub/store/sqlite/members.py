"""Members, their credentials and standing grants in the hub's SQLite store.

Names and e-mails live only here. The hub keeps each credential STRING (not a hash),
because every site hashes credentials with its own key; the string is never logged
(``wire.creds.redact`` shows its type only) and records keep it out of ``repr()``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from wire.creds import check_credential, redact
from wire.errors import WireError

from ..types import (
    Credential,
    CredentialConflict,
    Grant,
    InvalidCredential,
    Member,
    StoreError,
    UnknownMember,
    UnknownSite,
    pseudonym,
)
from .base import SqliteBase

log = logging.getLogger(__name__)
# SQL text is only ever built from constant column lists and "?" placeholders; every
# value travels as a parameter (hence the noqa: S608 below).

_CHUNK = 500  # ids per IN (...) query, well below SQLite's variable limit


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def marks(n: int) -> str:
    return ",".join("?" * n)


#: Column names that are reserved words in PostgreSQL: the shared SQL writes them quoted.
RESERVED = frozenset({"end"})


def quoted(column: str) -> str:
    """``column`` as the shared SQL writes it (``"end"``: a reserved word in PostgreSQL)."""
    return f'"{column}"' if column in RESERVED else column


def _member(row: sqlite3.Row) -> Member:
    return Member(id=row["id"], who=row["who"], display_name=row["display_name"], email=row["email"],
                  created_at=row["created_at"])


def _credential(row: sqlite3.Row) -> Credential:
    return Credential(id=row["id"], member_id=row["member_id"], credential=row["credential"], type=row["type"],
                      label=row["label"], created_at=row["created_at"])


def _grant(row: sqlite3.Row) -> Grant:
    doors = None if row["doors"] is None else tuple(json.loads(row["doors"]))
    return Grant(id=row["id"], member_id=row["member_id"], site_id=row["site_id"], doors=doors,
                 valid_from=row["valid_from"], valid_until=row["valid_until"], label=row["label"])


class MembersMixin(SqliteBase):
    """Members, credentials, standing grants, and the hub's own secrets."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._secrets: dict[str, bytes] = {}

    # --- secrets and members ---------------------------------------------------------------

    def hub_secret(self, name: str) -> bytes:
        """A named 32-byte random secret, made on first use and kept in the store (e.g.
        ``who`` for member pseudonyms: stable for as long as the store lives)."""
        if name in self._secrets:
            return self._secrets[name]
        key = f"secret:{name}"
        with self._write() as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, os.urandom(32)))
            value = bytes(c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()["value"])
        self._secrets[name] = value
        return value

    def add_member(self, member_id: str, display_name: str, email: str | None = None) -> Member:
        """Add a member (the platform's member id), or update the name and e-mail of one."""
        who = pseudonym(self.hub_secret("who"), member_id)
        with self._write() as c:
            c.execute(
                "INSERT INTO members (id, who, display_name, email, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, email = excluded.email",
                (member_id, who, display_name, email, int(time.time())),
            )
            row = c.execute("SELECT id, who, display_name, email, created_at FROM members WHERE id = ?",
                            (member_id,)).fetchone()
        return _member(row)

    def add_members(self, rows: Iterable[tuple[str, str, str | None]]) -> int:
        """Add or update many (member id, display name, e-mail) in one transaction; return
        how many rows were written."""
        secret = self.hub_secret("who")
        now = int(time.time())
        with self._write() as c:
            cur = c.executemany(
                "INSERT INTO members (id, who, display_name, email, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, email = excluded.email",
                ((mid, pseudonym(secret, mid), name, email, now) for mid, name, email in rows),
            )
            return cur.rowcount

    def remove_member(self, member_id: str) -> bool:
        """Remove a member with all their credentials and standing grants."""
        with self._write() as c:
            c.execute("DELETE FROM credentials WHERE member_id = ?", (member_id,))
            c.execute("DELETE FROM grants WHERE member_id = ?", (member_id,))
            return c.execute("DELETE FROM members WHERE id = ?", (member_id,)).rowcount > 0

    def get_member(self, member_id: str) -> Member | None:
        with self._read() as c:
            row = c.execute("SELECT id, who, display_name, email, created_at FROM members WHERE id = ?",
                            (member_id,)).fetchone()
        return _member(row) if row else None

    def member_by_who(self, who: str) -> Member | None:
        """The member behind a pseudonym seen in an event or occupancy report."""
        with self._read() as c:
            row = c.execute("SELECT id, who, display_name, email, created_at FROM members WHERE who = ?",
                            (who,)).fetchone()
        return _member(row) if row else None

    def members(self) -> list[Member]:
        with self._read() as c:
            rows = c.execute("SELECT id, who, display_name, email, created_at FROM members ORDER BY id").fetchall()
        return [_member(r) for r in rows]

    # --- credentials ------------------------------------------------------------------------

    def _enroll(self, c: sqlite3.Connection, member_id: str, credential: str, label: str | None,
                where: str = "") -> tuple[int, bool]:
        """Insert one credential in the open transaction; (row id, whether it is new)."""
        try:
            check_credential(credential)
        except WireError as exc:
            raise InvalidCredential(f"{where}{exc.args[0]}") from None
        if c.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise UnknownMember(f"{where}no member {member_id!r}")
        row = c.execute("SELECT id, member_id FROM credentials WHERE credential = ?", (credential,)).fetchone()
        if row is not None:
            if row["member_id"] != member_id:
                raise CredentialConflict(
                    f"{where}credential {redact(credential)} is already enrolled to member {row['member_id']!r}"
                )
            return int(row["id"]), False
        row = c.execute(
            "INSERT INTO credentials (member_id, credential, type, label, created_at) VALUES (?, ?, ?, ?, ?) "
            "RETURNING id",
            (member_id, credential, credential.partition(":")[0], label, int(time.time())),
        ).fetchone()
        return int(row["id"]), True

    def add_credential(self, member_id: str, credential: str, *, label: str | None = None) -> Credential:
        """Enroll a credential string to a member. Enrolling it again to the same member is
        a no-op; to another member it raises CredentialConflict. InvalidCredential if it
        does not have a PROTOCOL.md §1 form, UnknownMember if the member does not exist."""
        with self._write() as c:
            cred_id, new = self._enroll(c, member_id, credential, label)
            row = c.execute("SELECT id, member_id, credential, type, label, created_at FROM credentials "
                            "WHERE id = ?", (cred_id,)).fetchone()
        if new:
            log.info("credential %d (%s) enrolled to member %s", cred_id, redact(credential), member_id)
        return _credential(row)

    def import_credentials(self, rows: Iterable[tuple[str, str]]) -> int:
        """Enroll many (member id, credential string) pairs, all or none; return how many
        were new. An error names the 1-based row, never the credential."""
        added = 0
        with self._write() as c:
            for i, (member_id, credential) in enumerate(rows, start=1):
                added += self._enroll(c, member_id, credential, None, where=f"row {i}: ")[1]
        log.info("imported %d new credentials", added)
        return added

    def remove_credential(self, credential_id: int) -> bool:
        with self._write() as c:
            return c.execute("DELETE FROM credentials WHERE id = ?", (credential_id,)).rowcount > 0

    def credentials_of(self, member_id: str) -> list[Credential]:
        with self._read() as c:
            rows = c.execute("SELECT id, member_id, credential, type, label, created_at FROM credentials "
                             "WHERE member_id = ? ORDER BY id", (member_id,)).fetchall()
        return [_credential(r) for r in rows]

    def credentials_for_members(self, member_ids: Iterable[str]) -> dict[str, list[str]]:
        """Member id → its credential strings (members without any are left out)."""
        ids = sorted(set(member_ids))
        out: dict[str, list[str]] = {}
        with self._read() as c:
            for part in chunks(ids):
                where = f"member_id IN ({marks(len(part))})"
                sql = f"SELECT member_id, credential FROM credentials WHERE {where}"  # noqa: S608
                for r in c.execute(sql + " ORDER BY id", tuple(part)):
                    out.setdefault(r["member_id"], []).append(r["credential"])
        return out

    def owner_of_credential(self, credential: str) -> str | None:
        with self._read() as c:
            row = c.execute("SELECT member_id FROM credentials WHERE credential = ?", (credential,)).fetchone()
        return row["member_id"] if row else None

    # --- standing grants -----------------------------------------------------------------------

    def add_grant(
        self, member_id: str, site_id: str, doors: Sequence[str] | None = None, *,
        valid_from: int | None = None, valid_until: int | None = None, label: str = "",
    ) -> Grant:
        """Let a member's credentials open ``doors`` of a site (None: all of its doors)."""
        if valid_from is not None and valid_until is not None and valid_from > valid_until:
            raise StoreError("valid_from is after valid_until")
        with self._write() as c:
            if c.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
                raise UnknownMember(f"no member {member_id!r}")
            row = c.execute("SELECT doors FROM sites WHERE id = ? AND active = 1", (site_id,)).fetchone()
            if row is None:
                raise UnknownSite(f"no site {site_id!r}")
            if doors is not None:
                if not doors:
                    raise StoreError("a grant needs at least one door (None: all doors of the site)")
                unknown = [d for d in doors if d not in json.loads(row["doors"])]
                if unknown:
                    raise UnknownSite(f"site {site_id!r} has no door {unknown[0]!r}")
            cur = c.execute(
                "INSERT INTO grants (member_id, site_id, doors, valid_from, valid_until, label) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (member_id, site_id, None if doors is None else json.dumps(list(doors)), valid_from,
                 valid_until, label),
            )
            grant_id = int(cur.fetchone()["id"])
        return Grant(id=grant_id, member_id=member_id, site_id=site_id,
                     doors=None if doors is None else tuple(doors), valid_from=valid_from,
                     valid_until=valid_until, label=label)

    def remove_grant(self, grant_id: int) -> bool:
        with self._write() as c:
            return c.execute("DELETE FROM grants WHERE id = ?", (grant_id,)).rowcount > 0

    def grants_for_site(self, site_id: str) -> list[Grant]:
        with self._read() as c:
            rows = c.execute("SELECT id, member_id, site_id, doors, valid_from, valid_until, label FROM grants "
                             "WHERE site_id = ? ORDER BY id", (site_id,)).fetchall()
        return [_grant(r) for r in rows]

    def grants_of(self, member_id: str) -> list[Grant]:
        with self._read() as c:
            rows = c.execute("SELECT id, member_id, site_id, doors, valid_from, valid_until, label FROM grants "
                             "WHERE member_id = ? ORDER BY id", (member_id,)).fetchall()
        return [_grant(r) for r in rows]
