"""The applied site cache: hub-signed grants in a local SQLite database (WAL).

Contract (PROTOCOL.md §3):

- ``apply(CacheFull)`` refuses a version ≤ the applied one (``stale_version``);
  ``apply(CacheDelta)`` refuses a delta whose version ≤ the applied one (``stale_version``)
  and otherwise one whose ``base_version`` is not the applied version (``base_mismatch``,
  also when nothing has been applied yet). A refusal raises ``WireError`` and changes
  nothing.
- Applying is one SQLite transaction: after a crash or a power cut the database holds the
  old cache or the new one, whole, never a mixture.
- ``lookup(cred)`` goes through the index on ``cred``; it never scans the table.
- Storage failures (disk full, I/O errors) raise ``StorageError``; the transaction is
  rolled back and the previous cache keeps answering lookups.

The store does not verify signatures (the envelope layer did) and publishes nothing: the
caller turns the result or the refusal into ``cache/ack`` and a ``cache.applied`` /
``cache.rejected`` event.

Durability: ``PRAGMA synchronous=FULL``. WAL + NORMAL would keep the swap atomic but could
lose the last committed apply on a power cut; the hub would resend, so that would be
acceptable for the entries, but the site would then have acknowledged a version it no
longer holds, and ``newest_issued_at`` (the clock's lower bound) could move backwards.
FULL costs one fsync of the WAL per commit; applies (and notes of a newer signed time)
are rare, so every ack we send is true.

Threading: each ``CacheStore`` owns one connection, used from the thread that created it
(sqlite3's ``check_same_thread`` enforces it). Several stores on the same file are fine,
e.g. the main loop's (lookups, ``note_issued_at``) and a cache worker's (``apply``): WAL
readers see the last committed cache and are never blocked by an apply, and
``note_issued_at`` does not wait for one either. Another process may open the file with
``read_only=True`` while the agent runs (``torwart-edge status``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import msgspec
from sqlite_utils import Database, Migrations

from wire.errors import BASE_MISMATCH, MALFORMED, STALE_VERSION, WireError
from wire.messages import CacheDelta, CacheFull, CacheFullStream, Entry

from .db import BUSY_TIMEOUT_S, connect, migrate, rollback_quietly
from .errors import StorageError

log = logging.getLogger(__name__)

_migrations = Migrations("torwart-edge-cache")


@_migrations()
def m001_initial(db: Database) -> None:
    db["entries"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "cred": str,
            "doors": str,  # JSON list of door ids
            "from_ts": int,
            "until_ts": int,
            "who": str,
            "ref": str,
            "room": str,
        },
        pk="id",
        not_null={"cred", "doors", "who"},
    )
    # (cred, id): the decision's lookup is an index search that also yields a stable order.
    db["entries"].create_index(["cred", "id"], index_name="entries_cred")  # type: ignore[union-attr]
    db["meta"].create(  # type: ignore[union-attr]
        {
            "k": int,
            "version": int,
            "issued_at": int,
            "expires_at": int,
            "applied_at": float,
            "entry_count": int,
            "newest_issued_at": int,
        },
        pk="k",
        not_null={"entry_count", "newest_issued_at"},
        defaults={"entry_count": 0, "newest_issued_at": 0},
    )
    db.execute("INSERT INTO meta (k) VALUES (1)")


@_migrations()
def m002_trusted_keys(db: Database) -> None:
    """The hub's signing keys a verified cache named (PROTOCOL.md §3 ``keys``), as a JSON
    list, and the configured key they replaced (NULL: none named yet, the config's key is
    trusted). Written with the cache they came in, in its transaction."""
    db.execute("ALTER TABLE meta ADD COLUMN trusted_keys TEXT")
    db.execute("ALTER TABLE meta ADD COLUMN keys_base TEXT")


@dataclass(frozen=True)
class CacheMeta:
    """A consistent snapshot of the applied cache's metadata (for status displays)."""

    version: int | None
    issued_at: int | None
    expires_at: int | None
    applied_at: float | None
    entry_count: int
    newest_issued_at: int


_doors_decoder = msgspec.json.Decoder(list[str])
_keys_decoder = msgspec.json.Decoder(list[str])
_SELECT_ENTRY = "SELECT id, cred, doors, from_ts, until_ts, who, ref, room FROM entries"
_INSERT = (
    "INSERT INTO entries (id, cred, doors, from_ts, until_ts, who, ref, room) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT = _INSERT.replace("INSERT", "INSERT OR REPLACE", 1)
#: The hot-path query (public so that a test can EXPLAIN it: it must search the index).
LOOKUP_SQL = f"{_SELECT_ENTRY} WHERE cred = ? ORDER BY id"


def _row(e: Entry) -> tuple[str, str, str, int | None, int | None, str, str | None, str | None]:
    return (e.id, e.cred, msgspec.json.encode(e.doors).decode(), e.from_, e.until, e.who, e.ref, e.room)


def _entry(row: tuple[str, str, str, int | None, int | None, str, str | None, str | None]) -> Entry:
    id_, cred, doors, from_ts, until_ts, who, ref, room = row
    return Entry(
        id=id_, cred=cred, doors=_doors_decoder.decode(doors), from_=from_ts, until=until_ts,
        who=who, ref=ref, room=room,
    )


class CacheStore:
    """The applied cache of one site, in the SQLite file ``path``.

    ``read_only`` opens an existing file for reading only (``torwart-edge status`` next to a
    running agent): no schema changes, ``apply`` and ``note_issued_at`` fail.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._conn = connect(self.path, read_only=read_only)
        #: A signed time noted while the database was busy, not yet written (see note_issued_at).
        self._floor = 0
        if not read_only:
            migrate(self._conn, _migrations, self.path)

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        if not self.read_only:
            try:
                self._flush_floor(BUSY_TIMEOUT_S)
            except StorageError as exc:
                log.warning("%s", exc)
        self._conn.close()

    def __enter__(self) -> CacheStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- reading -----------------------------------------------------------------------

    def meta(self) -> CacheMeta:
        """All metadata in one read (one consistent snapshot)."""
        try:
            row = self._conn.execute(
                "SELECT version, issued_at, expires_at, applied_at, entry_count, newest_issued_at FROM meta WHERE k = 1"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if self.read_only and "no such table" in str(exc):
                return CacheMeta(None, None, None, None, 0, 0)  # the agent is creating the file right now
            raise StorageError(f"cannot read cache metadata from {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read cache metadata from {self.path}: {exc}") from exc
        if row is None:  # a read-only view of a file the agent has not initialised yet
            return CacheMeta(None, None, None, None, 0, self._floor)
        version, issued_at, expires_at, applied_at, count, newest = row
        return CacheMeta(version, issued_at, expires_at, applied_at, count, max(newest, self._floor))

    @property
    def version(self) -> int | None:
        """The applied version; None before the first cache."""
        return self.meta().version

    @property
    def issued_at(self) -> int | None:
        return self.meta().issued_at

    @property
    def expires_at(self) -> int | None:
        """After this time booking entries are not granted (``cache_expired``)."""
        return self.meta().expires_at

    @property
    def applied_at(self) -> float | None:
        return self.meta().applied_at

    @property
    def newest_issued_at(self) -> int:
        """The newest signed ``issued_at`` ever seen (caches and commands); 0 if none."""
        return self.meta().newest_issued_at

    def stored_newest_issued_at(self) -> int:
        """``newest_issued_at`` as written to the file, without a newer one still held in
        memory (see note_issued_at): the value that outlives a power cut. 0 if none."""
        try:
            row = self._conn.execute("SELECT newest_issued_at FROM meta WHERE k = 1").fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read cache metadata from {self.path}: {exc}") from exc
        return 0 if row is None else int(row[0])

    def count(self) -> int:
        """Number of entries in the applied cache (kept in the meta row, no table scan)."""
        return self.meta().entry_count

    def lookup(self, cred: str) -> list[Entry]:
        """The entries for one credential hash, ordered by id; [] if none.

        An index search (``entries_cred``): microseconds even with 100,000 entries.
        """
        try:
            rows = self._conn.execute(LOOKUP_SQL, (cred,)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the cache {self.path}: {exc}") from exc
        return [_entry(r) for r in rows]

    def lookup_with_meta(self, cred: str) -> tuple[list[Entry], CacheMeta]:
        """``lookup`` and ``meta`` from one read snapshot, so that entries and expiry always
        belong to the same cache even while another connection applies a new one."""
        conn = self._conn
        try:
            conn.execute("BEGIN")
            try:
                return self.lookup(cred), self.meta()
            finally:
                conn.execute("COMMIT")  # ends the read snapshot; nothing was written
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the cache {self.path}: {exc}") from exc

    def entries(self) -> Iterator[Entry]:
        """Every entry, ordered by id (for tools and tests, not the hot path)."""
        for row in self._conn.execute(f"{_SELECT_ENTRY} ORDER BY id"):
            yield _entry(row)

    # --- writing -----------------------------------------------------------------------

    def trusted_keys(self, config_key: str) -> list[str]:
        """The hub's signing keys (standard base64) this site trusts: those the last applied
        cache that named any named, or ``config_key`` alone when none did -- or when the
        config names another key than the one they replaced (an operator's deliberate change,
        e.g. after the hub was rebuilt without the keys the sites trust)."""
        try:
            row = self._conn.execute("SELECT trusted_keys, keys_base FROM meta WHERE k = 1").fetchone()
        except sqlite3.OperationalError as exc:
            if self.read_only and "no such" in str(exc):
                return [config_key]  # an older or brand-new file: nothing named yet
            raise StorageError(f"cannot read the trusted keys from {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the trusted keys from {self.path}: {exc}") from exc
        if row is None or row[0] is None:
            return [config_key]
        if row[1] != config_key:
            log.warning("the config names hub key %s, not %s which the trusted keys replaced: trusting the "
                        "config's key alone", config_key, row[1])
            return [config_key]
        return list(_keys_decoder.decode(row[0]))

    def apply(self, body: CacheFull | CacheFullStream | CacheDelta, *, now: float | None = None,
              config_key: str | None = None) -> int:
        """Apply a verified cache body in one transaction; return the number of entries after.

        A cache.full that names ``keys`` replaces the trusted keys in the same transaction
        (``config_key``: the configured key they replace, see ``trusted_keys``): after a
        crash the site trusts the old keys with the old cache, or the new with the new.

        Raises WireError(stale_version | base_mismatch) without changing anything, or
        StorageError when the database cannot be written (the old cache stays in use).
        A delta's removals win over its upserts of the same id (fail-secure). ``now`` is
        recorded as ``applied_at`` (default: the system clock).
        """
        applied_at = time.time() if now is None else now
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (current,) = conn.execute("SELECT version FROM meta WHERE k = 1").fetchone()
                self._check(body, current)
                size = (f"+{len(body.upsert)} -{len(body.remove)}" if isinstance(body, CacheDelta)
                        else f"{len(body.entries)} entries")
                log.info("cache version %d: applying %s (%s) over version %s", body.version,
                         body.__struct_config__.tag, size, current)
                if not isinstance(body, CacheDelta):
                    # DELETE without WHERE is SQLite's truncate optimisation: no per-row work.
                    conn.execute("DELETE FROM entries")
                    entries = body.entries if isinstance(body, CacheFull) else body.iter_entries()
                    try:
                        conn.executemany(_INSERT, map(_row, entries))
                    except sqlite3.IntegrityError:
                        raise WireError(MALFORMED, "an entry id appears twice in the cache",
                                        field="$.entries") from None
                else:
                    conn.executemany(_UPSERT, map(_row, body.upsert))
                    conn.executemany("DELETE FROM entries WHERE id = ?", ((i,) for i in body.remove))
                (count,) = conn.execute("SELECT count(*) FROM entries").fetchone()
                conn.execute(
                    "UPDATE meta SET version = ?, issued_at = ?, expires_at = ?, applied_at = ?, entry_count = ?,"
                    " newest_issued_at = max(newest_issued_at, ?) WHERE k = 1",
                    (body.version, body.issued_at, body.expires_at, applied_at, count,
                     max(body.issued_at, self._floor)),
                )
                keys = None if isinstance(body, CacheDelta) else body.keys
                if isinstance(keys, list):
                    conn.execute("UPDATE meta SET trusted_keys = ?, keys_base = ? WHERE k = 1",
                                 (msgspec.json.encode(keys).decode(), config_key))
                conn.execute("COMMIT")
            except BaseException:
                rollback_quietly(conn, "cache apply")
                raise
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot apply cache version {body.version} to {self.path}: {exc}; the previous cache stays in use"
            ) from exc
        log.debug("applied %s version %d: %d entries", body.__struct_config__.tag, body.version, count)
        return int(count)

    @staticmethod
    def _check(body: CacheFull | CacheFullStream | CacheDelta, current: int | None) -> None:
        # Stale first: a late or duplicated delta (QoS 1 redelivery) needs no full resend.
        if current is not None and body.version <= current:
            raise WireError(STALE_VERSION, f"version {body.version} is not after the applied version {current}",
                            field="$.version")
        if isinstance(body, CacheDelta) and body.base_version != current:
            have = "no cache" if current is None else f"version {current}"
            raise WireError(BASE_MISMATCH, f"delta is based on version {body.base_version}, the site has {have}",
                            field="$.base_version")

    def note_issued_at(self, t: int, *, wait: float = 0.05) -> int:
        """Raise ``newest_issued_at`` to ``t`` if ``t`` is newer (signed commands call this);
        return the value after. Never lowers it.

        Never blocks the caller for long: if another connection holds the write lock (a
        large apply on a worker thread), it waits at most ``wait`` seconds, then keeps the
        value in memory (``newest_issued_at`` includes it at once) and writes it with the
        next note, apply or close.
        """
        self._floor = max(self._floor, t)
        self._flush_floor(wait)
        return self.newest_issued_at

    def _flush_floor(self, wait: float) -> None:
        conn, floor = self._conn, self._floor
        if floor <= 0:
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {max(0, int(wait * 1000))}")
            try:
                # Only write (and fsync) when the value actually grows.
                conn.execute("UPDATE meta SET newest_issued_at = ? WHERE k = 1 AND newest_issued_at < ?",
                             (floor, floor))
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                log.debug("cache database busy; signed time %d kept in memory for now", floor)
                return
            raise StorageError(f"cannot record the signed time {floor} in {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot record the signed time {floor} in {self.path}: {exc}") from exc
