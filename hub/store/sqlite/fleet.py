"""Join codes, the sites' certificates and their revocation in the hub's SQLite store."""

from __future__ import annotations

import sqlite3

from ..fleet import SITE_STATES, JoinCode, SiteCert
from .base import SqliteBase

_CODE_COLS = ("id, site_id, secret_hash, created_at, expires_at, broker_host, broker_port, tls, attempts, state, "
              "used_at")
_CERT_COLS = "serial, site_id, issued_at, not_after, how, revoked_at"


def _code(row: sqlite3.Row) -> JoinCode:
    return JoinCode(id=row["id"], site_id=row["site_id"], secret_hash=row["secret_hash"],
                    created_at=row["created_at"], expires_at=row["expires_at"], broker_host=row["broker_host"],
                    broker_port=row["broker_port"], tls=bool(row["tls"]), attempts=row["attempts"],
                    state=row["state"], used_at=row["used_at"])


def _cert(row: sqlite3.Row) -> SiteCert:
    return SiteCert(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


class FleetMixin(SqliteBase):
    """Join codes (one open per site), certificates, and each site's state (active, revoked, removed)."""

    def add_join_code(self, code: JoinCode) -> None:
        """Store a new open code for its site; the site's other open codes are withdrawn."""
        with self._write() as c:
            c.execute("UPDATE join_codes SET state = 'withdrawn' WHERE site_id = ? AND state = 'open'",
                      (code.site_id,))
            c.execute(f"INSERT INTO join_codes ({_CODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'open', NULL)",  # noqa: S608
                      (code.id, code.site_id, code.secret_hash, code.created_at, code.expires_at, code.broker_host,
                       code.broker_port, int(code.tls)))

    def join_code(self, code_id: str) -> JoinCode | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_CODE_COLS} FROM join_codes WHERE id = ?", (code_id,)).fetchone()  # noqa: S608
        return None if row is None else _code(row)

    def join_code_failed(self, code_id: str, *, max_attempts: int) -> int:
        """Count a wrong try against an open code (locked at ``max_attempts``); the count after."""
        with self._write() as c:
            row = c.execute(
                "UPDATE join_codes SET attempts = attempts + 1, "
                "state = CASE WHEN attempts + 1 >= ? THEN 'locked' ELSE state END "
                "WHERE id = ? AND state = 'open' RETURNING attempts", (max_attempts, code_id)).fetchone()
        return 0 if row is None else int(row["attempts"])

    def use_join_code(self, code_id: str, *, now: float) -> bool:
        """Mark an open, unexpired code used; False (nothing changes) otherwise. Only one of
        several concurrent joins with the same code gets True."""
        with self._write() as c:
            row = c.execute("UPDATE join_codes SET state = 'used', used_at = ? "
                            "WHERE id = ? AND state = 'open' AND expires_at > ? RETURNING id",
                            (now, code_id, now)).fetchone()
        return row is not None

    def withdraw_join_codes(self, site_id: str) -> int:
        with self._write() as c:
            rows = c.execute("UPDATE join_codes SET state = 'withdrawn' WHERE site_id = ? AND state = 'open' "
                             "RETURNING id", (site_id,)).fetchall()
        return len(rows)

    def add_site_cert(self, cert: SiteCert) -> None:
        with self._write() as c:
            c.execute(f"INSERT INTO site_certs ({_CERT_COLS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
                      (cert.serial, cert.site_id, cert.issued_at, cert.not_after, cert.how, cert.revoked_at))

    def site_certs(self, site_id: str | None = None) -> list[SiteCert]:
        """Certificates issued, by site and issue time."""
        sql = f"SELECT {_CERT_COLS} FROM site_certs"  # noqa: S608
        with self._read() as c:
            rows = (c.execute(sql + " WHERE site_id = ? ORDER BY issued_at, serial", (site_id,)) if site_id
                    else c.execute(sql + " ORDER BY site_id, issued_at, serial")).fetchall()
        return [_cert(r) for r in rows]

    def revoke_site_certs(self, site_id: str, *, at: float, keep: str | None = None) -> int:
        """Revoke every certificate of ``site_id`` not revoked yet (but ``keep``, a serial);
        how many."""
        with self._write() as c:
            rows = c.execute("UPDATE site_certs SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL "
                             "AND serial <> ? RETURNING serial", (at, site_id, keep or "")).fetchall()
        return len(rows)

    def revoked_certs(self, *, valid_at: float) -> list[SiteCert]:
        """Revoked certificates still inside their validity at ``valid_at`` (what a CRL lists)."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_CERT_COLS} FROM site_certs WHERE revoked_at IS NOT NULL "  # noqa: S608
                             "AND not_after > ? ORDER BY serial", (valid_at,)).fetchall()
        return [_cert(r) for r in rows]

    def set_site_state(self, site_id: str, state: str, *, at: float) -> None:
        if state not in SITE_STATES:
            raise ValueError(f"unknown site state {state!r}")
        with self._write() as c:
            c.execute("INSERT INTO site_lifecycle (site_id, state, changed_at) VALUES (?, ?, ?) "
                      "ON CONFLICT (site_id) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at",
                      (site_id, state, at))

    def site_lifecycle(self) -> dict[str, tuple[str, float]]:
        """Each site with a recorded state: (state, since). A site not named is active."""
        with self._read() as c:
            rows = c.execute("SELECT site_id, state, changed_at FROM site_lifecycle").fetchall()
        return {r["site_id"]: (r["state"], r["changed_at"]) for r in rows}
