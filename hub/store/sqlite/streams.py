"""Events in the hub's SQLite store, per site and event stream (PROTOCOL.md §4).

Each site numbers the events of a stream 1, 2, 3, … without holes, so the hub can prove
that nothing is missing. A stream is made with the site's outbox; a reinstalled site starts
a new one at seq 1, and the hub keeps every stream: (site, stream, seq) is stored once.
Events of a site from before streams carry none and belong to the legacy stream "".

Per (site, stream) the store keeps ``max_seq`` (the highest seq stored), ``gaps`` (the
missing ranges below it), ``acked_upto`` (every seq up to it is stored: the value of
``event/ack``) and ``base`` (seqs ≤ it belong to the site's legacy numbering, see
hub/ingest.py). ``store_batch`` updates them from the batch alone, in the transaction that
stores the events: a seq ≤ ``acked_upto`` is a duplicate by definition, a seq above
``max_seq`` extends it (opening a gap if it skips), a seq inside a gap fills it; nothing
rescans the events table. Because the bookkeeping, not the table, decides what is a
duplicate, events purged by retention are not stored again when a site resends them.

A message that is not an event is kept aside in ``event_quarantine`` (the newest
``QUARANTINE_KEEP`` per site, each truncated to ``QUARANTINE_BYTES``) and counted per site;
when its stream and seq could be read, that seq counts as received, so that it never holds
back the acknowledgement of the events after it (and a valid event that comes later for
that seq is still stored, while the quarantined message is kept).

The site's current stream is the newest one the hub has seen (the legacy stream never
replaces another); ``site_state`` mirrors its acked_upto / max_seq / gaps.
"""

from __future__ import annotations

import bisect
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ..streams import QUARANTINE_BYTES
from ..types import (
    BatchStored,
    EventBatch,
    EventsStored,
    EventTuple,
    IncomingEvent,
    Quarantined,
    StoredEvent,
    StreamState,
)
from .base import SqliteBase

log = logging.getLogger(__name__)

Gaps = list[list[int]]  # sorted, disjoint, inclusive [first, last] ranges

#: Quarantined messages kept per site (the count goes on); each is cut to QUARANTINE_BYTES.
QUARANTINE_KEEP = 1000
LEGACY = ""


def _in_gap(gaps: Gaps, seq: int) -> int:
    """Index of the gap holding ``seq``, or -1."""
    i = bisect.bisect_right(gaps, seq, key=lambda g: g[0]) - 1
    return i if i >= 0 and gaps[i][0] <= seq <= gaps[i][1] else -1


def advance(gaps: Gaps, max_seq: int, seqs: Sequence[int]) -> tuple[Gaps, int]:
    """Account for newly stored ``seqs`` (ascending, each above max_seq or in a gap)."""
    for seq in seqs:
        if seq > max_seq:
            if seq > max_seq + 1:
                gaps.append([max_seq + 1, seq - 1])
            max_seq = seq
            continue
        i = _in_gap(gaps, seq)
        if i < 0:
            continue
        first, last = gaps[i]
        pieces = [p for p in ([first, seq - 1], [seq + 1, last]) if p[0] <= p[1]]
        gaps[i : i + 1] = pieces
    return gaps, max_seq


_STREAM_COLS = "stream, base, acked_upto, max_seq, gaps, first_seen, last_seen"


def _stream(site_id: str, row: sqlite3.Row) -> StreamState:
    return StreamState(site_id=site_id, stream=row["stream"], base=row["base"], acked_upto=row["acked_upto"],
                       max_seq=row["max_seq"], gaps=tuple((a, b) for a, b in json.loads(row["gaps"])),
                       first_seen=row["first_seen"], last_seen=row["last_seen"])


class _Stream:
    """One stream's bookkeeping while a batch is stored."""

    def __init__(self, row: sqlite3.Row | None, base: int, now: float) -> None:
        self.created = row is None
        if row is None:
            self.base, self.acked, self.max_seq, self.gaps, self.first_seen = base, base, base, [], now
        else:
            self.base, self.acked, self.max_seq = row["base"], row["acked_upto"], row["max_seq"]
            self.gaps, self.first_seen = json.loads(row["gaps"]), row["first_seen"]

    def fresh(self, seq: int) -> bool:
        return seq > self.acked and (seq > self.max_seq or _in_gap(self.gaps, seq) >= 0)


class StreamsMixin(SqliteBase):
    """The event log, per site and stream, and the messages kept aside."""

    def store_batch(self, site_id: str, batch: EventBatch, *, received_at: float | None = None) -> BatchStored:
        """Store a batch of a site's events and quarantined messages in one transaction;
        each (site, stream, seq) is stored once, whatever is replayed and in which order.
        A stream the hub has not seen is made here: its ``base`` is 0 (a new stream, all of
        it is stored), or, when its events declare a ``stream_base`` (an outbox upgraded
        from before streams) and the site has a legacy stream, that base capped at the legacy
        stream's ``max_seq``, and at least its ``acked_upto``."""
        now = time.time() if received_at is None else received_at
        by_stream: dict[str, dict[int, IncomingEvent]] = {}
        for ev in batch.events:
            by_stream.setdefault(ev.stream, {}).setdefault(ev.seq, ev)
        q_seqs: dict[str, set[int]] = {}
        for q in batch.quarantined:
            if q.stream is not None and q.seq is not None:
                q_seqs.setdefault(q.stream, set()).add(q.seq)
        names = sorted(set(by_stream) | set(q_seqs))  # the legacy stream "" first
        out: dict[str, StreamState] = {}
        new_keys: set[tuple[str, int]] = set()
        unknown = 0
        with self._write() as c:
            c.execute("INSERT INTO site_state (site_id) VALUES (?) ON CONFLICT (site_id) DO NOTHING", (site_id,))
            site = c.execute("SELECT stream, quarantined FROM site_state WHERE site_id = ?", (site_id,)).fetchone()
            current, kept_aside = site["stream"], site["quarantined"]
            rows = {r["stream"]: r for r in c.execute(
                f"SELECT {_STREAM_COLS} FROM event_streams WHERE site_id = ?", (site_id,))}  # noqa: S608
            for name in names:
                base = 0
                legacy = rows.get(LEGACY)
                if name != LEGACY and name not in rows and batch.bases.get(name, 0) > 0 and legacy is not None:
                    # The site's claim counts only as far as the hub saw its legacy numbering
                    # (max_seq): a larger one, from a buggy or hostile site, would have the
                    # hub ack that stream's own events without storing them.
                    base = max(min(batch.bases[name], legacy["max_seq"]), legacy["acked_upto"])
                st = _Stream(rows.get(name), base, now)
                if st.created:
                    self._log_new_stream(site_id, name, base, [r for r in rows if r != name])
                events = by_stream.get(name, {})
                late = self._quarantined_seqs(c, site_id, name, [s for s in events if not st.fresh(s)]) \
                    if kept_aside else []
                if events and name not in (LEGACY, current):
                    first = rows[current]["first_seen"] if current in rows \
                        else out[current].first_seen if current in out else None
                    if current == LEGACY or first is None or st.first_seen >= first:
                        current = name  # the newest stream with events; the legacy one never takes over
                ev_seqs = sorted(s for s in events if st.fresh(s))
                seqs = sorted(set(ev_seqs) | {s for s in q_seqs.get(name, ()) if st.fresh(s)})
                ev_seqs = sorted(ev_seqs + late)  # counted already, when they were kept aside
                stored = c.executemany(
                    "INSERT INTO events (site_id, stream, seq, id, type, ts, received_at, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, stream, seq) DO NOTHING",
                    [(site_id, name, s, events[s].id, events[s].type, events[s].ts, now, events[s].payload)
                     for s in ev_seqs],
                )
                if ev_seqs and stored.rowcount != len(ev_seqs):  # the table held some the bookkeeping did not
                    log.warning("site %s stream %r: %d events were in the table already", site_id, name,
                                len(ev_seqs) - stored.rowcount)
                new_keys.update((name, s) for s in ev_seqs)
                unknown += sum(1 for s in ev_seqs if not events[s].known)
                st.gaps, st.max_seq = advance(st.gaps, st.max_seq, seqs)
                st.acked = st.gaps[0][0] - 1 if st.gaps else st.max_seq
                c.execute(
                    "INSERT INTO event_streams (site_id, stream, base, acked_upto, max_seq, gaps, first_seen, "
                    "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, stream) DO UPDATE SET "
                    "acked_upto = excluded.acked_upto, max_seq = excluded.max_seq, gaps = excluded.gaps, "
                    "last_seen = excluded.last_seen",
                    (site_id, name, st.base, st.acked, st.max_seq, json.dumps(st.gaps), st.first_seen, now),
                )
                out[name] = StreamState(site_id=site_id, stream=name, base=st.base, acked_upto=st.acked,
                                        max_seq=st.max_seq, gaps=tuple((a, b) for a, b in st.gaps),
                                        first_seen=st.first_seen, last_seen=now)
                if st.gaps and seqs:
                    log.info("site %s stream %r: events missing in %d ranges, first %d-%d", site_id, name,
                             len(st.gaps), *st.gaps[0])
            if batch.quarantined:
                c.executemany(
                    "INSERT INTO event_quarantine (site_id, received_at, stream, seq, why, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(site_id, now, q.stream, q.seq, q.why[:512], bytes(q.payload[:QUARANTINE_BYTES]))
                     for q in batch.quarantined],
                )
                c.execute("DELETE FROM event_quarantine WHERE site_id = ? AND id <= "
                          "(SELECT id FROM event_quarantine WHERE site_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                          (site_id, site_id, QUARANTINE_KEEP))
            sets = ["stream = ?", "unknown_types = unknown_types + ?", "quarantined = quarantined + ?"]
            values: list[Any] = [current, unknown, len(batch.quarantined)]
            if by_stream:  # a sign of life; garbage alone is not
                sets.append("last_seen = ?")
                values.append(now)
            if current in out:
                cur = out[current]
                sets += ["acked_upto = ?", "max_seq = ?", "gaps = ?"]
                values += [cur.acked_upto, cur.max_seq, json.dumps([list(g) for g in cur.gaps])]
            c.execute(f"UPDATE site_state SET {', '.join(sets)} WHERE site_id = ?",  # noqa: S608
                      (*values, site_id))
        return BatchStored(streams=out, new=frozenset(new_keys), unknown=unknown,
                           quarantined=len(batch.quarantined))

    @staticmethod
    def _quarantined_seqs(c: sqlite3.Connection, site_id: str, stream: str, seqs: list[int]) -> list[int]:
        """Of ``seqs`` (counted as received already), those that were counted for a
        quarantined message and have no event stored: a valid event for such a seq is
        stored after all (the message kept aside was not the site's event)."""
        out: list[int] = []
        for i in range(0, len(seqs), 500):
            part = seqs[i : i + 500]
            out += [r["seq"] for r in c.execute(
                f"SELECT DISTINCT seq FROM event_quarantine q WHERE site_id = ? AND stream = ? "  # noqa: S608
                f"AND seq IN ({', '.join('?' * len(part))}) AND NOT EXISTS (SELECT 1 FROM events e "
                "WHERE e.site_id = q.site_id AND e.stream = q.stream AND e.seq = q.seq)",
                (site_id, stream, *part))]
        return out

    @staticmethod
    def _log_new_stream(site_id: str, name: str, base: int, others: list[str]) -> None:
        if name == LEGACY:
            return
        if base:
            log.warning("site %s: event stream %s continues the site's numbering after seq %d (an upgraded "
                        "outbox)", site_id, name, base)
        elif others:
            log.warning("site %s was reset: new event stream %s beside %s; all of it is stored", site_id, name,
                        ", ".join(repr(o) for o in sorted(others)))

    def store_events(
        self, site_id: str, events: Sequence[EventTuple], *, received_at: float | None = None,
        stream: str = LEGACY,
    ) -> EventsStored:
        """Store a batch of one stream's events (seq, id, type, ts, payload JSON); each
        (site, stream, seq) is stored once. Return how many were new, the stream's new
        ``acked_upto`` and its gaps."""
        batch = EventBatch(events=[IncomingEvent(stream, *ev) for ev in events])
        r = self.store_batch(site_id, batch, received_at=received_at)
        st = r.streams.get(stream)
        if st is None:
            have = self.event_streams(site_id)
            st = next((s for s in have if s.stream == stream), None)
        return EventsStored(new=len(r.new), acked_upto=st.acked_upto if st else 0, gaps=st.gaps if st else ())

    def event_streams(self, site_id: str) -> list[StreamState]:
        """A site's streams, oldest first (the legacy stream before any other)."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_STREAM_COLS} FROM event_streams WHERE site_id = ? "  # noqa: S608
                             "ORDER BY first_seen IS NOT NULL, first_seen, rowid", (site_id,)).fetchall()
        return [_stream(site_id, r) for r in rows]

    def quarantine(self, site_id: str, limit: int = 100) -> list[Quarantined]:
        """The messages kept aside for a site, newest first."""
        with self._read() as c:
            rows = c.execute("SELECT why, payload, stream, seq, received_at FROM event_quarantine "
                             "WHERE site_id = ? ORDER BY id DESC LIMIT ?", (site_id, max(0, limit))).fetchall()
        return [Quarantined(why=r["why"], payload=bytes(r["payload"]), stream=r["stream"], seq=r["seq"],
                            received_at=r["received_at"]) for r in rows]

    def events(
        self, *, site_id: str | None = None, type: str | None = None,
        since: float | None = None, until: float | None = None, limit: int = 100,
    ) -> list[StoredEvent]:
        """Events, newest first (by the site's ``ts``), filtered by site, type and
        ``since`` ≤ ts < ``until``."""
        where: list[str] = []
        params: list[Any] = []
        for cond, value in (("site_id = ?", site_id), ("type = ?", type), ("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(cond)
                params.append(value)
        sql = "SELECT site_id, seq, id, type, ts, received_at, payload, stream FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, seq DESC LIMIT ?"
        params.append(max(0, limit))
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [StoredEvent(site_id=r["site_id"], seq=r["seq"], id=r["id"], type=r["type"], ts=r["ts"],
                            received_at=r["received_at"], payload=r["payload"], stream=r["stream"]) for r in rows]

    def purge_events(self, received_before: float) -> int:
        """Delete events (and quarantined messages) the hub received before
        ``received_before`` (retention), in batches so that writers are not locked out for
        long. Return how many events went. The streams' bookkeeping stays."""
        total = 0
        for table in ("events", "event_quarantine"):
            n_table = 0
            while True:
                with self._write() as c:
                    n = c.execute(
                        f"DELETE FROM {table} WHERE rowid IN "  # noqa: S608
                        f"(SELECT rowid FROM {table} WHERE received_at < ? LIMIT 10000)", (received_before,)
                    ).rowcount
                n_table += n
                if n < 10000:
                    break
            if n_table:
                log.info("purged %d rows of %s received before %.0f", n_table, table, received_before)
            if table == "events":
                total = n_table
        return total
