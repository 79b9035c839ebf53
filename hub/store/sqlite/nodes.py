"""Several hub nodes on one store, in SQLite: the nodes' heartbeats, the leader's lease
(one row, taken and renewed by an atomic compare-and-set) and the change feed.

The SQL is portable (``INSERT ... ON CONFLICT ... DO UPDATE``, ``CASE`` rather than
``max()``, ``RETURNING id``), so that the PostgreSQL store can take it over unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ..nodes import Change, Lease, NodeInfo, NodeRow
from .base import SqliteBase

#: The one lease row's name (a hub has one leader).
LEASE = "leader"
_NODE_COLS = "id, host, pid, version, started_at, last_seen, role, instance"
_LEASE_COLS = "holder, term, expires_at, acquired_at, renewed_at, vacant, previous"


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(holder=row["holder"], term=int(row["term"]), expires_at=float(row["expires_at"]),
                 acquired_at=float(row["acquired_at"]), renewed_at=float(row["renewed_at"]),
                 vacant=float(row["vacant"]), previous=row["previous"])


class NodesMixin(SqliteBase):
    """Node heartbeats, the leader's lease, the change feed."""

    def heartbeat_node(self, node: NodeInfo, *, now: float) -> None:
        """Record that ``node`` is alive at ``now`` (its row created or updated)."""
        with self._write_own_rows() as c:
            c.execute(
                f"INSERT INTO nodes ({_NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "version = excluded.version, started_at = excluded.started_at, last_seen = excluded.last_seen, "
                "role = excluded.role, instance = excluded.instance",
                (node.id, node.host, node.pid, node.version, node.started_at, now, node.role, node.instance),
            )

    def nodes(self) -> list[NodeRow]:
        """Every node the store has heard of, by id (stopped ones too)."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_NODE_COLS} FROM nodes ORDER BY id").fetchall()  # noqa: S608
        return [NodeRow(**{k: r[k] for k in r.keys()}) for r in rows]  # noqa: SIM118 (sqlite3.Row)

    def forget_node(self, node_id: str) -> bool:
        """Remove a node's row (a node retired for good); False if there was none."""
        with self._write() as c:
            return c.execute("DELETE FROM nodes WHERE id = ?", (node_id,)).rowcount > 0

    def try_lease(self, node_id: str, *, now: float, seconds: float) -> Lease:
        """Take or renew the leader's lease for ``node_id`` until ``now + seconds``, in one
        atomic compare-and-set: it succeeds when the lease is free (never taken, or
        released), expired at ``now``, or held by ``node_id`` already; the term goes up by
        one whenever the holder changes (a release counts as a change). Return the lease
        as it stands after the attempt: ``held_by(node_id, now)`` says who won."""
        if seconds <= 0:
            raise ValueError("a lease lasts a positive number of seconds")
        with self._write_own_rows() as c:
            c.execute(
                f"INSERT INTO leader_lease (name, {_LEASE_COLS}) "  # noqa: S608
                "VALUES (?, ?, 1, ?, ?, ?, 0, NULL) "
                "ON CONFLICT (name) DO UPDATE SET "
                "term = CASE WHEN leader_lease.holder = excluded.holder THEN leader_lease.term "
                "ELSE leader_lease.term + 1 END, "
                "acquired_at = CASE WHEN leader_lease.holder = excluded.holder THEN leader_lease.acquired_at "
                "ELSE excluded.acquired_at END, "
                "vacant = CASE WHEN leader_lease.holder = excluded.holder THEN leader_lease.vacant "
                "WHEN leader_lease.expires_at < excluded.acquired_at "
                "THEN excluded.acquired_at - leader_lease.expires_at ELSE 0 END, "
                "previous = CASE WHEN leader_lease.holder = excluded.holder THEN leader_lease.previous "
                "ELSE COALESCE(leader_lease.holder, leader_lease.previous) END, "
                "holder = excluded.holder, expires_at = excluded.expires_at, renewed_at = excluded.renewed_at "
                "WHERE leader_lease.holder IS NULL OR leader_lease.holder = excluded.holder "
                "OR leader_lease.expires_at <= excluded.acquired_at",
                (LEASE, node_id, now + seconds, now, now),
            )
            row = c.execute(f"SELECT {_LEASE_COLS} FROM leader_lease WHERE name = ?",  # noqa: S608
                            (LEASE,)).fetchone()
        return _lease(row)

    def release_lease(self, node_id: str, *, now: float) -> bool:
        """Give up the lease if ``node_id`` holds it (it expires at ``now``, the holder is
        cleared, the term stays until the next holder); False if it did not hold it."""
        with self._write_own_rows() as c:
            return c.execute("UPDATE leader_lease SET holder = NULL, previous = holder, expires_at = ? "
                             "WHERE name = ? AND holder = ?", (now, LEASE, node_id)).rowcount > 0

    def lease(self) -> Lease | None:
        """The leader's lease as it stands (None: no node has ever taken it); whether it
        is still valid is ``expires_at`` against the clock."""
        with self._read() as c:
            row = c.execute(f"SELECT {_LEASE_COLS} FROM leader_lease WHERE name = ?",  # noqa: S608
                            (LEASE,)).fetchone()
        return None if row is None else _lease(row)

    # --- the change feed -----------------------------------------------------------------------

    def record_changes(self, node_id: str, changes: Iterable[tuple[str, str]], *, at: float) -> int:
        """Append (site, what) notices that ``node_id`` stored new state, in one
        transaction; the id of the last one appended (0 when none)."""
        rows = list(changes)
        last = 0
        if not rows:
            return last
        with self._write() as c:
            for site, what in rows:
                row = c.execute("INSERT INTO changes (node, site_id, what, at) VALUES (?, ?, ?, ?) RETURNING id",
                                (node_id, site, what, at)).fetchone()
                last = int(row["id"])
        return last

    def changes_since(self, after: int, *, limit: int = 1000) -> list[Change]:
        """The change feed's entries with an id above ``after``, oldest first, at most ``limit``."""
        with self._read() as c:
            rows = c.execute("SELECT id, node, site_id, what, at FROM changes WHERE id > ? ORDER BY id LIMIT ?",
                             (after, max(0, limit))).fetchall()
        return [Change(id=int(r["id"]), node=r["node"], site_id=r["site_id"], what=r["what"], at=float(r["at"]))
                for r in rows]

    def last_change(self) -> int:
        """The id of the newest entry of the change feed (0 when it is empty)."""
        with self._read() as c:
            row = c.execute("SELECT MAX(id) AS id FROM changes").fetchone()
        return 0 if row is None or row["id"] is None else int(row["id"])

    def purge_changes(self, before: float) -> int:
        """Delete the change feed's entries older than ``before``; how many (the newest
        entry is kept, so that ids never go back)."""
        with self._write() as c:
            return c.execute("DELETE FROM changes WHERE at < ? AND id < (SELECT MAX(id) FROM changes)",
                             (before,)).rowcount
