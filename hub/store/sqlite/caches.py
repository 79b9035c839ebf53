"""Published cache versions in the hub's SQLite store.

Per site: ``cache_sites`` holds the latest version (its build time, entry count and size)
and the last retained cache.full; ``cache_entries`` the latest version's entries (id →
Entry JSON); ``cache_versions`` the change log, one row per version with what it added,
changed and removed relative to the version before (``base_version``). The version
number, the entry set and the log row are written in one transaction, so after a crash
the store holds either the old version or the new one, whole; a version number once
committed is never handed out again (``synchronous = FULL``, see ``base``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import msgspec

from ..types import CacheLogRow, CacheState, CacheVersionConflict, StoreError
from .base import SqliteBase

log = logging.getLogger(__name__)

_json = msgspec.json.Encoder()


def _array(items: Sequence[str]) -> str:
    """A JSON array of already-encoded JSON values."""
    return "[" + ",".join(items) + "]"


class CachesMixin(SqliteBase):
    """Cache versions, entry sets and the change log (the logic is in hub.caches)."""

    def cache_state(self, site_id: str) -> CacheState | None:
        with self._read() as c:
            row = c.execute(
                "SELECT version, built_at, n_entries, size, retained_version, retained_entries "
                "FROM cache_sites WHERE site_id = ?", (site_id,)
            ).fetchone()
        if row is None:
            return None
        return CacheState(site_id=site_id, version=row["version"], built_at=row["built_at"],
                          n_entries=row["n_entries"], size=row["size"], retained_version=row["retained_version"],
                          retained_entries=row["retained_entries"])

    def cache_snapshot(self, site_id: str) -> tuple[CacheState, dict[str, str]] | None:
        """The latest version and its entries (id → Entry JSON), read together; None
        before the first version."""
        with self._read():
            state = self.cache_state(site_id)
            if state is None:
                return None
            rows = self._conn.execute("SELECT id, entry FROM cache_entries WHERE site_id = ?", (site_id,))
            return state, {r["id"]: r["entry"] for r in rows}

    def record_cache_version(
        self, site_id: str, *, version: int, base_version: int, built_at: int,
        added: Mapping[str, str], changed: Mapping[str, str], removed: Sequence[str],
        n_entries: int, size: int,
    ) -> None:
        """Record ``version`` = ``base_version`` + these changes (entries as JSON), in one
        transaction. CacheVersionConflict if the latest version is not ``base_version``
        (0: none yet) any more, i.e. another writer got there first."""
        with self._write() as c:
            row = c.execute("SELECT version FROM cache_sites WHERE site_id = ?", (site_id,)).fetchone()
            current = row["version"] if row else 0
            if current != base_version:
                raise CacheVersionConflict(
                    f"site {site_id}: latest cache version is {current}, not {base_version}"
                )
            if version <= current:
                raise StoreError(f"site {site_id}: cache version {version} is not after {current}")
            c.execute(
                "INSERT INTO cache_versions (site_id, version, base_version, built_at, n_entries, size, "
                "added, changed, removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (site_id, version, base_version, built_at, n_entries, size, _array(list(added.values())),
                 _array(list(changed.values())), _json.encode(list(removed)).decode("utf-8")),
            )
            c.executemany("DELETE FROM cache_entries WHERE site_id = ? AND id = ?",
                          [(site_id, i) for i in removed])
            c.executemany(
                "INSERT INTO cache_entries (site_id, id, entry) VALUES (?, ?, ?) "
                "ON CONFLICT (site_id, id) DO UPDATE SET entry = excluded.entry",
                [(site_id, i, e) for part in (added, changed) for i, e in part.items()],
            )
            c.execute(
                "INSERT INTO cache_sites (site_id, version, built_at, n_entries, size) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site_id) DO UPDATE SET version = excluded.version, built_at = excluded.built_at, "
                "n_entries = excluded.n_entries, size = excluded.size",
                (site_id, version, built_at, n_entries, size),
            )

    def cache_log(self, site_id: str, after_version: int) -> list[CacheLogRow]:
        """Log rows of the versions after ``after_version``, oldest first."""
        with self._read() as c:
            rows = c.execute(
                "SELECT version, base_version, built_at, n_entries, size, added, changed, removed FROM cache_versions "
                "WHERE site_id = ? AND version > ? ORDER BY version", (site_id, after_version)
            ).fetchall()
        return [CacheLogRow(version=r["version"], base_version=r["base_version"], built_at=r["built_at"],
                            n_entries=r["n_entries"], size=r["size"], added=r["added"], changed=r["changed"],
                            removed=r["removed"]) for r in rows]

    def set_retained_full(self, site_id: str, version: int) -> None:
        """Remember that ``version`` is now the site's retained cache.full."""
        with self._write() as c:
            row = c.execute("SELECT version, n_entries FROM cache_sites WHERE site_id = ?", (site_id,)).fetchone()
            if row is None:
                raise StoreError(f"site {site_id}: no cache built yet")
            n_entries = row["n_entries"]
            if row["version"] != version:
                logged = c.execute("SELECT n_entries FROM cache_versions WHERE site_id = ? AND version = ?",
                                   (site_id, version)).fetchone()
                if logged is None:
                    raise StoreError(f"site {site_id}: cache version {version} is unknown")
                n_entries = logged["n_entries"]
            c.execute("UPDATE cache_sites SET retained_version = ?, retained_entries = ? WHERE site_id = ?",
                      (version, n_entries, site_id))

    def drop_site_caches(self, site_id: str) -> CacheState | None:
        """Forget everything published for ``site_id`` (a removed site): its latest version,
        its entries and its change log, in one transaction; the state dropped, or None when
        there was none. Its events and its lifecycle state stay. A later version (the site
        reinstated) starts from base 0 again, above every earlier one (versions follow the
        clock, ``hub.caches``)."""
        with self._write() as c:
            row = c.execute(
                "DELETE FROM cache_sites WHERE site_id = ? RETURNING version, built_at, n_entries, size, "
                "retained_version, retained_entries", (site_id,)).fetchone()
            c.execute("DELETE FROM cache_entries WHERE site_id = ?", (site_id,))
            c.execute("DELETE FROM cache_versions WHERE site_id = ?", (site_id,))
        if row is None:
            return None
        return CacheState(site_id=site_id, version=row["version"], built_at=row["built_at"],
                          n_entries=row["n_entries"], size=row["size"], retained_version=row["retained_version"],
                          retained_entries=row["retained_entries"])

    def prune_cache_log(self, site_id: str, *, keep_last: int, hard_max: int) -> int:
        """Drop old log rows, keeping deltas possible from each of the last ``keep_last``
        versions' bases and from the retained full, whichever reaches further back, but
        never more than ``hard_max`` rows. Return how many rows went."""
        with self._write() as c:
            def base_of_nth_newest(n: int) -> int | None:
                row = c.execute(
                    "SELECT base_version FROM cache_versions WHERE site_id = ? ORDER BY version DESC "
                    "LIMIT 1 OFFSET ?", (site_id, n - 1)
                ).fetchone()
                return None if row is None else int(row["base_version"])

            by_count = base_of_nth_newest(keep_last)
            retained_row = c.execute("SELECT retained_version FROM cache_sites WHERE site_id = ?",
                                     (site_id,)).fetchone()
            retained = retained_row["retained_version"] if retained_row else None
            # Rows with version <= cutoff go; the row whose base is the cutoff stays, so a
            # delta from the cutoff version remains possible.
            cutoff = None if by_count is None or retained is None else min(by_count, retained)
            hard = base_of_nth_newest(hard_max)
            if hard is not None:
                cutoff = hard if cutoff is None else max(cutoff, hard)
            if cutoff is None:
                return 0
            n = c.execute("DELETE FROM cache_versions WHERE site_id = ? AND version <= ?",
                          (site_id, cutoff)).rowcount
        if n:
            log.debug("site %s: pruned %d cache log rows up to version %d", site_id, n, cutoff)
        return n
