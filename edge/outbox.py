"""The durable event outbox (PROTOCOL.md §4 Event).

Every event the site emits is validated, numbered and committed here before anyone may
publish it, and stays until the hub acknowledges it on ``event/ack``:

- ``stream`` is a random id made once with the outbox (PROTOCOL.md §4); every event carries
  it, and the hub acknowledges per stream. A reinstalled site (a new outbox) starts a new
  stream at seq 1, which the hub stores in full beside the old one.
- ``seq`` starts at 1 and grows by exactly 1 per event, across restarts and power cuts. The
  counter lives in a meta row updated in the same transaction as the insert, so a seq is
  never reused, even after acknowledged rows are purged (``MAX(seq)+1`` would reuse them).
- An outbox made before streams gets its stream when this code first opens it and keeps its
  numbering (a hub from before streams must go on seeing one numbering). Its unacknowledged
  events are rewritten to carry the stream, and ``stream_base`` (carried in its events as an
  added field while > 0) records that every seq ≤ it was stored, under the site's legacy
  numbering, by the hub: the stream's own events start after it. An ack without a stream
  (a hub from before streams, one numbering per site) applies to the numbering and raises
  ``stream_base`` to it, since that hub stored those seqs under the legacy numbering; an
  ack naming another stream (a previous installation, the legacy stream) changes nothing.
- ``PRAGMA synchronous=FULL`` with WAL: once ``emit`` returns, the event survives a power
  cut (the WAL is fsynced at every commit).
- ``ack(upto, stream)`` is cumulative ("every event with seq ≤ upto is stored at the hub"), so the
  acknowledged state is one number, ``acked_upto``; ``pending`` is everything after it.
- ``purge`` deletes acknowledged events older than the retention period (GDPR storage
  limitation), never an unacknowledged one.

Storage failures (disk full, I/O errors) raise ``StorageError``: the failed event is not
stored and consumes no seq, and everything committed before stays. An invalid event is a
programming error and raises ``InvalidEvent``.

Threading: one connection, used from the thread that created the outbox. A status tool in
another process may open the file with ``read_only=True`` while the agent runs (WAL).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from sqlite_utils import Database, Migrations

from wire import messages as m

from .db import connect, migrate, rollback_quietly
from .errors import EdgeError, StorageError

log = logging.getLogger(__name__)

_migrations = Migrations("torwart-edge-outbox")
_COMMON = frozenset({"id", "site", "stream", "stream_base", "seq", "boot", "ts", "clock_synced", "type"})


@_migrations()
def m001_initial(db: Database) -> None:
    db["events"].create(  # type: ignore[union-attr]
        {"seq": int, "id": str, "type": str, "ts": float, "data": bytes},
        pk="seq",
        not_null={"id", "type", "ts", "data"},
    )
    db["meta"].create(  # type: ignore[union-attr]
        {"k": int, "last_seq": int, "acked_upto": int},
        pk="k",
        not_null={"last_seq", "acked_upto"},
        defaults={"last_seq": 0, "acked_upto": 0},
    )
    db.execute("INSERT INTO meta (k) VALUES (1)")


@_migrations()
def m002_stream(db: Database) -> None:
    """The outbox's event stream (PROTOCOL.md §4), made here once. An outbox from before
    streams keeps its numbering: its acknowledged seqs become the stream's base, and the
    events still waiting for the hub are rewritten to carry the stream (and the base)."""
    stream = secrets.token_hex(16)
    db["meta"].add_column("stream", str, not_null_default="")  # type: ignore[union-attr]
    db["meta"].add_column("stream_base", int, not_null_default=0)  # type: ignore[union-attr]
    acked = db.execute("SELECT acked_upto FROM meta WHERE k = 1").fetchone()["acked_upto"]
    db.execute("UPDATE meta SET stream = ?, stream_base = ? WHERE k = 1", (stream, acked))
    rows = db.execute("SELECT seq, data FROM events WHERE seq > ?", (acked,)).fetchall()
    for row in rows:
        doc = msgspec.json.decode(row["data"])
        doc["stream"] = stream
        if acked:
            doc["stream_base"] = acked
        db.execute("UPDATE events SET data = ? WHERE seq = ?", (msgspec.json.encode(doc), row["seq"]))
    if rows or acked:
        log.warning("outbox upgraded to event stream %s: %d unacknowledged events now carry it; seqs up to %d "
                    "were acknowledged before", stream, len(rows), acked)


class InvalidEvent(EdgeError, ValueError):
    """An event does not match PROTOCOL.md §4: a bug in the caller, never a runtime condition."""


@cache
def _field_names(cls: type[m.Event]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(cls))


def build_event(type: str, fields: Mapping[str, Any], *, site: str, seq: int, boot: str, ts: float,
                clock_synced: bool, event_id: str | None = None, stream: str | None = None,
                stream_base: int = 0) -> m.Event:
    """Build and validate one event (no I/O). Raises InvalidEvent for an unknown type, an
    unknown or reserved field, or a value the contract refuses."""
    cls = m.EVENT_TYPES.get(type)
    if cls is None:
        raise InvalidEvent(f"unknown event type {type!r}")
    reserved = _COMMON & fields.keys()
    if reserved:
        raise InvalidEvent(f"{type}: {sorted(reserved)} are set by the outbox, not the caller")
    unknown = fields.keys() - _field_names(cls)
    if unknown:
        raise InvalidEvent(f"{type} has no field(s) {sorted(unknown)}")
    obj = {
        "type": type, "id": event_id or uuid.uuid4().hex, "site": site, "seq": seq, "boot": boot,
        "ts": float(ts), "clock_synced": clock_synced, **fields,
    }
    if stream is not None:
        obj["stream"] = stream
    if stream_base:
        obj["stream_base"] = stream_base
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"{type}: {exc}") from None


class Outbox:
    """The events of site ``site`` in the SQLite file ``path``; ``boot`` is this process
    start's random id (carried in every event)."""

    def __init__(self, path: Path, site: str, boot: str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.site = site
        self.boot = boot
        self.read_only = read_only
        self._conn = connect(self.path, read_only=read_only)
        self._conn.row_factory = sqlite3.Row
        if not read_only:
            migrate(self._conn, _migrations, self.path)
        #: This outbox's event stream ("" in a read-only view of a file not yet upgraded).
        self.stream, self._stream_base = self._stream()

    def _stream(self) -> tuple[str, int]:
        try:
            row = self._conn.execute("SELECT stream, stream_base FROM meta WHERE k = 1").fetchone()
        except sqlite3.OperationalError as exc:
            if self.read_only and ("no such table" in str(exc) or "no such column" in str(exc)):
                return ("", 0)  # being created or upgraded by the agent right now
            raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        return ("", 0) if row is None else (str(row["stream"]), int(row["stream_base"]))

    @property
    def stream_info(self) -> tuple[str, int]:
        """(stream, stream_base) as stored: also for a read-only outbox beside the agent."""
        return self._stream()
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------------

    def emit(self, type: str, *, ts: float, clock_synced: bool, **fields: Any) -> bytes:
        """Validate, number and durably commit one event; return its JSON bytes to publish.

        ``fields`` are the type's own fields (PROTOCOL.md §4 table), e.g.
        ``emit("door.opened", ts=now, clock_synced=True, door="front")``. Raises
        InvalidEvent (a bug) or StorageError (nothing stored, no seq used).
        """
        # Validate before taking the write lock; the real seq is filled in below.
        event = build_event(type, fields, site=self.site, seq=1, boot=self.boot, ts=ts, clock_synced=clock_synced,
                            stream=self.stream, stream_base=self._stream_base)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute("SELECT last_seq FROM meta WHERE k = 1").fetchone()["last_seq"]
                seq = last + 1
                event = msgspec.structs.replace(event, seq=seq)
                data = m.encode(event)
                conn.execute("INSERT INTO events (seq, id, type, ts, data) VALUES (?, ?, ?, ?, ?)",
                             (seq, event.id, type, event.ts, data))
                conn.execute("UPDATE meta SET last_seq = ? WHERE k = 1", (seq,))
                conn.execute("COMMIT")
            except BaseException:
                rollback_quietly(conn, "event emit")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store {type} event in {self.path}: {exc}; the event was not stored") from exc
        log.debug("event %d %s committed", seq, type)
        return data

    def ack(self, upto: int, stream: str | None = None) -> int:
        """Mark every event with seq ≤ ``upto`` acknowledged; return how many were newly
        acknowledged. Idempotent. An ``upto`` beyond the last emitted seq changes nothing
        (a hub confusing this site with another, or a site database replaced): logged.

        ``stream`` is the stream the ack names: this outbox's, or None for an ack of a hub
        from before streams (one numbering per site: it applies, and raises
        ``stream_base``). An ack naming another stream (the legacy stream "", a previous
        installation's) changes nothing: every seq of the legacy numbering this outbox
        still holds was rewritten into its stream when it was upgraded."""
        if stream is not None and stream != self.stream:
            log.info("hub acknowledged stream %r up to %d; this outbox's stream is %s: ignored",
                     stream, upto, self.stream)
            return 0
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                meta = conn.execute("SELECT last_seq, acked_upto FROM meta WHERE k = 1").fetchone()
                last, acked = meta["last_seq"], meta["acked_upto"]
                if upto > last:
                    log.warning("hub acknowledged events up to %d, but the last event emitted is %d; ignored",
                                upto, last)
                    conn.execute("ROLLBACK")
                    return 0
                if upto <= acked:
                    conn.execute("ROLLBACK")
                    return 0
                conn.execute("UPDATE meta SET acked_upto = ? WHERE k = 1", (upto,))
                if stream is None:
                    conn.execute("UPDATE meta SET stream_base = max(stream_base, ?) WHERE k = 1", (upto,))
                conn.execute("COMMIT")
                if stream is None:
                    self._stream_base = max(self._stream_base, upto)
            except BaseException:
                rollback_quietly(conn, "event ack")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"cannot record the ack up to {upto} in {self.path}: {exc}") from exc
        return int(upto - acked)

    def purge(self, now: float, retention_days: int) -> int:
        """Delete acknowledged events whose ``ts`` is older than ``retention_days`` before
        ``now``; return how many. Unacknowledged events are never deleted."""
        cutoff = now - retention_days * 86400.0
        try:
            cur = self._conn.execute(
                "DELETE FROM events WHERE seq <= (SELECT acked_upto FROM meta WHERE k = 1) AND ts < ?", (cutoff,)
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot purge old events from {self.path}: {exc}") from exc
        if cur.rowcount:
            log.info("purged %d acknowledged events older than %d days", cur.rowcount, retention_days)
        return cur.rowcount

    # --- reading -----------------------------------------------------------------------

    def _meta(self) -> tuple[int, int]:
        try:
            row = self._conn.execute("SELECT last_seq, acked_upto FROM meta WHERE k = 1").fetchone()
        except sqlite3.OperationalError as exc:
            if self.read_only and "no such table" in str(exc):
                return (0, 0)  # the agent is creating the file right now
            raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        return (0, 0) if row is None else (int(row["last_seq"]), int(row["acked_upto"]))

    @property
    def last_seq(self) -> int:
        """The seq of the last event emitted (0 before the first)."""
        return self._meta()[0]

    @property
    def acked_upto(self) -> int:
        """Every event with seq ≤ this is acknowledged by the hub."""
        return self._meta()[1]

    def pending_count(self) -> int:
        """Events not yet acknowledged (no table scan: seqs have no gaps)."""
        last, acked = self._meta()
        return last - acked

    def pending(self, limit: int = 500, after_seq: int = 0) -> list[tuple[int, bytes]]:
        """Up to ``limit`` unacknowledged events with seq > ``after_seq``, in seq order, as
        (seq, JSON bytes). ``after_seq`` lets a sender page on without waiting for acks."""
        try:
            rows = self._conn.execute(
                "SELECT seq, data FROM events WHERE seq > max(?, (SELECT acked_upto FROM meta WHERE k = 1))"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        return [(int(r["seq"]), bytes(r["data"])) for r in rows]

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        """The newest ``n`` events still stored, newest first, as dicts with an extra
        ``acked`` flag (for a status display)."""
        try:
            rows = self._conn.execute(
                "SELECT data, seq <= (SELECT acked_upto FROM meta WHERE k = 1) AS acked FROM events "
                "ORDER BY seq DESC LIMIT ?",
                (n,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        out: list[dict[str, Any]] = []
        for r in rows:
            event: dict[str, Any] = msgspec.json.decode(r["data"])
            event["acked"] = bool(r["acked"])
            out.append(event)
        return out
