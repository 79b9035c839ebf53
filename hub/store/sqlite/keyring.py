"""The hub's signing-key ring and what each site was announced, in the hub's SQLite store.

``signing_keys``: one row per key (kid, public key, state, times); ``key_rollouts``: per
site, the kids announced from which cache version on, and the kids it trusted before. A
change of the ring is a compare-and-set (``change_signing_keys``): two processes (the
command line's ``keys rotate`` and the running hub's switch) never both win.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from ..keyring import KEY_STATES, KeyRingChanged, KeyRollout, SigningKeyRow
from .base import SqliteBase

_KEY_COLS = "kid, public_key, state, created_at, changed_at"


def _rollout(r: sqlite3.Row) -> KeyRollout:
    return KeyRollout(site_id=r["site_id"], keys=tuple(r["keys"].split()), version=r["version"],
                      previous=tuple(r["previous"].split()), at=r["at"])


class KeyRingMixin(SqliteBase):
    """Signing keys and their rollout to sites (the logic is in hub.keyring)."""

    def signing_keys(self) -> list[SigningKeyRow]:
        """Every key of the ring, oldest first; [] before the first rotation."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_KEY_COLS} FROM signing_keys ORDER BY created_at, kid").fetchall()  # noqa: S608
        return [SigningKeyRow(**{k: r[k] for k in r.keys()}) for r in rows]  # noqa: SIM118 (sqlite3.Row)

    def change_signing_keys(self, expect: Mapping[str, str | None], rows: Sequence[SigningKeyRow]) -> None:
        """In one transaction: check that each kid of ``expect`` is in that state (None: not
        in the ring), then write ``rows`` (insert, or update state and changed_at).
        KeyRingChanged, and nothing written, when the ring is otherwise; ValueError for a
        state that is not one of KEY_STATES."""
        for row in rows:
            if row.state not in KEY_STATES:
                raise ValueError(f"key state {row.state!r} is not one of {', '.join(KEY_STATES)}")
        with self._write() as c:
            for kid, state in expect.items():
                r = c.execute("SELECT state FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
                if (None if r is None else r["state"]) != state:
                    raise KeyRingChanged(f"key {kid} is {'not in the ring' if r is None else r['state']}, "
                                         f"expected {state or 'none'}")
            c.executemany(
                "INSERT INTO signing_keys (kid, public_key, state, created_at, changed_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kid) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at",
                [(r.kid, r.public_key, r.state, r.created_at, r.changed_at) for r in rows],
            )

    def key_rollout(self, site_id: str) -> KeyRollout | None:
        """What ``site_id`` was last announced; None if nothing yet."""
        with self._read() as c:
            r = c.execute("SELECT site_id, keys, version, previous, at FROM key_rollouts WHERE site_id = ?",
                          (site_id,)).fetchone()
        return None if r is None else _rollout(r)

    def key_rollouts(self) -> list[KeyRollout]:
        """Every site's rollout, by site."""
        with self._read() as c:
            rows = c.execute("SELECT site_id, keys, version, previous, at FROM key_rollouts ORDER BY site_id")
            return [_rollout(r) for r in rows]

    def set_key_rollout(self, site_id: str, keys: Sequence[str], version: int, previous: Sequence[str], *,
                        at: float) -> None:
        """Record that ``site_id`` gets ``keys`` (kids) from cache ``version`` on, having
        trusted ``previous`` before (replacing what was recorded for it)."""
        with self._write() as c:
            c.execute(
                "INSERT INTO key_rollouts (site_id, keys, version, previous, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site_id) DO UPDATE SET keys = excluded.keys, version = excluded.version, "
                "previous = excluded.previous, at = excluded.at",
                (site_id, " ".join(keys), version, " ".join(previous), at),
            )
