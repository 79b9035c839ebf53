"""The outbox's event stream (PROTOCOL.md §4): a random id made once with the outbox and
carried by every event; acks per stream; an outbox made before streams upgraded in place
(keeps its numbering); acks of a hub from before streams (no stream)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
from sqlite_utils import Database

from edge.outbox import Outbox, _migrations, build_event

SITE = "minheim"
T0 = 1_700_000_000.0


def opened(o: Outbox, door: str = "front") -> dict[str, object]:
    doc: dict[str, object] = msgspec.json.decode(o.emit("door.opened", ts=T0, clock_synced=True, door=door))
    return doc


def old_outbox(path: Path, n: int, acked: int) -> list[bytes]:
    """An outbox.db as the code before streams made it: its schema and migration record, and
    ``n`` events without a stream of which ``acked`` were acknowledged. Returns the events."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _migrations.apply(Database(conn), stop_before="m002_stream")
        out = []
        for seq in range(1, n + 1):
            data = msgspec.json.encode(build_event("door.opened", {"door": "front"}, site=SITE, seq=seq,
                                                   boot="old", ts=T0 + seq, clock_synced=True))
            assert b'"stream"' not in data
            conn.execute("INSERT INTO events (seq, id, type, ts, data) VALUES (?, ?, 'door.opened', ?, ?)",
                         (seq, f"old-{seq}", T0 + seq, data))
            out.append(data)
        conn.execute("UPDATE meta SET last_seq = ?, acked_upto = ? WHERE k = 1", (n, acked))
    finally:
        conn.close()
    return out


def test_every_outbox_has_its_own_random_stream_carried_by_every_event(tmp_path: Path) -> None:
    with Outbox(tmp_path / "a.db", SITE, "b") as a, Outbox(tmp_path / "b.db", SITE, "b") as b:
        assert len(a.stream) == 32 and int(a.stream, 16) >= 0 and a.stream == a.stream.lower()
        assert a.stream != b.stream
        first = opened(a)
        assert (first["stream"], first["seq"]) == (a.stream, 1)
        assert "stream_base" not in first  # a new outbox's stream starts at 1
        assert opened(b)["stream"] == b.stream
    with Outbox(tmp_path / "a.db", SITE, "b2") as again:  # made once: the same after a restart
        assert again.stream == first["stream"]
        assert (opened(again)["stream"], again.last_seq) == (first["stream"], 2)


def test_an_outbox_made_before_streams_gets_a_stream_and_keeps_its_numbering(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old = old_outbox(path, n=5, acked=3)
    with Outbox(path, SITE, "new") as o:
        assert len(o.stream) == 32
        assert (o.last_seq, o.acked_upto, o.pending_count()) == (5, 3, 2)
        pending = {seq: msgspec.json.decode(raw) for seq, raw in o.pending()}
        # What waits for the hub now carries the stream, and the base: seqs ≤ 3 were stored
        # under the site's legacy numbering, the stream's own seqs start after it.
        assert sorted(pending) == [4, 5]
        for seq, doc in pending.items():
            assert doc == {**msgspec.json.decode(old[seq - 1]), "stream": o.stream, "stream_base": 3}
        new = opened(o)
        assert (new["seq"], new["stream"], new["stream_base"]) == (6, o.stream, 3)
        assert o.ack(6, o.stream) == 3 and o.pending_count() == 0
    with Outbox(path, SITE, "again") as o:  # upgraded once
        assert opened(o)["seq"] == 7


def test_an_outbox_made_before_streams_with_nothing_acknowledged_starts_its_stream_at_one(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old_outbox(path, n=2, acked=0)
    with Outbox(path, SITE, "new") as o:
        docs = [msgspec.json.decode(raw) for _, raw in o.pending()]
        assert [(d["seq"], d["stream"]) for d in docs] == [(1, o.stream), (2, o.stream)]
        assert all("stream_base" not in d for d in docs)  # a whole stream: the hub stores all of it


def test_an_ack_without_a_stream_applies_to_the_numbering_and_raises_the_stream_base(tmp_path: Path) -> None:
    """A hub from before streams acks one numbering per site, stored without streams: the
    site applies it, and its later events say where its stream continues that numbering."""
    with Outbox(tmp_path / "o.db", SITE, "b") as o:
        for _ in range(4):
            opened(o)
        assert o.ack(3, None) == 3
        assert o.acked_upto == 3
        after = opened(o)
        assert (after["seq"], after["stream_base"]) == (5, 3)
    with Outbox(tmp_path / "o.db", SITE, "b2") as o:  # kept across restarts
        assert opened(o)["stream_base"] == 3


def test_an_ack_naming_another_stream_changes_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", SITE, "b") as o:
        for _ in range(3):
            opened(o)
        assert o.ack(3, "") == 0  # the legacy stream: not this outbox's
        assert o.ack(3, "ab" * 16) == 0  # a previous installation's stream
        assert (o.acked_upto, o.pending_count()) == (0, 3)
        assert "stream_base" not in opened(o)
        assert o.ack(2, o.stream) == 2
