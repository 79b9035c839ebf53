"""The hub store's event streams on real SQLite files: the migration of a store from before
streams, a site upgraded while its hub was still from before streams, the current stream,
and a quarantined seq whose real event comes later."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from edge.events import EventStream
from edge.outbox import Outbox
from hub.ingest import Ingest
from hub.store import EventBatch, IncomingEvent, Quarantined, open_store, stream_notes
from hub.store.sqlite import schema as store_schema
from tests.hub.store_contract import store_url_fixture  # noqa: F401
from wire import messages as m

SITE = "minheim"
T0 = 1_800_000_000.0


class OldDoorOpened(msgspec.Struct, tag="door.opened", tag_field="type", kw_only=True):
    """``door.opened`` as a hub from before streams decodes it."""

    id: str
    site: str
    seq: int
    boot: str
    ts: float
    clock_synced: bool
    door: str


def store_before_streams(path: Path, monkeypatch: pytest.MonkeyPatch,
                         events: list[tuple[int, str]], acked: int, max_seq: int, gaps: list[list[int]]) -> None:
    """A hub store as the code before streams left it: every migration before the streams
    one, and ``events`` (seq, payload) of SITE with that site state."""
    before = store_schema.MIGRATIONS[: store_schema.MIGRATIONS.index(store_schema._event_streams)]
    with monkeypatch.context() as mp:
        mp.setattr(store_schema, "MIGRATIONS", before)
        open_store(path).close()
    conn = sqlite3.connect(path)
    with conn:
        assert "stream" not in [r[1] for r in conn.execute("PRAGMA table_info(events)")]
        conn.executemany("INSERT INTO events (site_id, seq, id, type, ts, received_at, payload) "
                         "VALUES (?, ?, ?, 'door.opened', ?, ?, ?)",
                         [(SITE, seq, f"e{seq}", T0, T0, payload) for seq, payload in events])
        conn.execute("INSERT INTO site_state (site_id, acked_upto, max_seq, gaps) VALUES (?, ?, ?, ?)",
                     (SITE, acked, max_seq, json.dumps(gaps)))
    conn.close()


def legacy_event(seq: int) -> bytes:
    return m.encode(m.DoorOpened(id=f"old-{seq}", site=SITE, seq=seq, boot="old", ts=T0, clock_synced=True,
                                 door="eingang"))


def test_the_migration_files_existing_events_under_the_legacy_stream_and_keeps_their_gaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.sqlite3"
    store_before_streams(path, monkeypatch, [(s, legacy_event(s).decode()) for s in (1, 2, 4)], 2, 4, [[3, 3]])
    acks: list[tuple[str, str, int]] = []
    with open_store(path) as store:
        assert [(e.stream, e.seq) for e in reversed(store.events(site_id=SITE))] == [("", 1), ("", 2), ("", 4)]
        (legacy,) = store.event_streams(SITE)
        assert (legacy.stream, legacy.base, legacy.acked_upto, legacy.max_seq, legacy.gaps) == ("", 0, 2, 4, ((3, 3),))
        state = store.site_state(SITE)
        assert state is not None and (state.stream, state.acked_upto, state.gaps) == ("", 2, ((3, 3),))
        ingest = Ingest(store, lambda s, stream, upto: acks.append((s, stream, upto)))
        # The old site resends seq 3: the legacy stream closes its gap.
        ingest.events(SITE, [legacy_event(3)])
        assert acks[-1] == (SITE, "", 4)
        # The Pi is reinstalled with new software: a new stream from seq 1, stored in full.
        with Outbox(tmp_path / "outbox.db", SITE, "new") as ob:
            raws = [ob.emit("door.opened", ts=T0, clock_synced=True, door="eingang") for _ in range(3)]
            ingest.events(SITE, raws)
            assert acks[-1] == (SITE, ob.stream, 3)
            assert sorted(e.seq for e in store.events(site_id=SITE) if e.stream == ob.stream) == [1, 2, 3]
            notes = stream_notes(ob.stream, store.event_streams(SITE))
            assert (notes["previous"], notes["previous_acked"]) == ("", 4) and notes["reset_at"] is not None
            state = store.site_state(SITE)
            assert state is not None and (state.stream, state.acked_upto) == (ob.stream, 3)
            # A late legacy event never takes the current stream back.
            ingest.events(SITE, [legacy_event(5)])
            state = store.site_state(SITE)
            assert state is not None and (state.stream, state.acked_upto) == (ob.stream, 3)


def test_a_site_upgraded_before_its_hub_loses_nothing_when_the_hub_is_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New site, old hub: the old hub stores the new site's events by seq (it ignores the
    stream) and acks without a stream; the site applies those acks. Then the hub is
    upgraded: the site's stream continues the legacy numbering, with no gap 1..3."""
    with Outbox(tmp_path / "outbox.db", SITE, "new") as ob:
        raws = [ob.emit("door.opened", ts=T0, clock_synced=True, door="eingang") for _ in range(3)]
        old_hub_view = [msgspec.json.decode(r, type=OldDoorOpened) for r in raws]  # the extra field is ignored
        assert [e.seq for e in old_hub_view] == [1, 2, 3]
        stream = EventStream(ob, publish=lambda raw: True, connected=lambda: False, resend_seconds=60,
                             post=lambda fn: None, status_changed=lambda: None)
        stream.on_ack(b'{"upto": 3}')  # the old hub's ack: no stream
        assert (ob.acked_upto, ob.pending_count()) == (3, 0)

        path = tmp_path / "hub.sqlite3"
        store_before_streams(path, monkeypatch, [(i + 1, r.decode()) for i, r in enumerate(raws)], 3, 3, [])
        later = [ob.emit("door.opened", ts=T0, clock_synced=True, door="eingang") for _ in range(2)]
        acks: list[tuple[str, str, int]] = []
        with open_store(path) as store:  # the hub is upgraded: its store migrates
            Ingest(store, lambda s, st, upto: acks.append((s, st, upto))).events(SITE, later)
            assert acks == [(SITE, ob.stream, 5)]
            (cur,) = [s for s in store.event_streams(SITE) if s.stream == ob.stream]
            assert (cur.base, cur.acked_upto, cur.gaps) == (3, 5, ())
        stream.on_ack(m.encode(m.EventAck(stream=ob.stream, upto=5)))
        assert ob.pending_count() == 0


def test_a_quarantined_seq_whose_real_event_comes_later_is_stored_then(store_url: str) -> None:
    with open_store(store_url) as store:
        s = "cd" * 16
        r = store.store_batch(SITE, EventBatch(quarantined=[Quarantined(why="broken", payload=b"{}", stream=s,
                                                                          seq=1)]))
        assert (r.streams[s].acked_upto, r.new, r.quarantined) == (1, frozenset(), 1)
        real = IncomingEvent(s, 1, "e1", "door.opened", T0, '{"type":"door.opened"}')
        r = store.store_batch(SITE, EventBatch(events=[real]))
        assert r.new == {(s, 1)} and r.streams[s].acked_upto == 1
        assert [(e.stream, e.seq) for e in store.events(site_id=SITE)] == [(s, 1)]
        r = store.store_batch(SITE, EventBatch(events=[real]))  # and once only
        assert r.new == frozenset()


def test_a_stream_first_seen_after_its_first_seq_is_still_stored_in_full(store_url: str) -> None:
    """Seq 2 of a new stream may arrive first (another hub worker has seq 1): with a legacy
    history at the site, the hub still waits for seq 1 of the new stream, never skips it."""
    with open_store(store_url) as store:
        store.store_events(SITE, [(s, f"l{s}", "door.opened", T0, "{}") for s in range(1, 11)])  # legacy 1..10
        s = "ef" * 16
        r = store.store_events(SITE, [(2, "n2", "door.opened", T0, "{}")], stream=s)
        assert (r.acked_upto, r.gaps) == (0, ((1, 1),))
        r = store.store_events(SITE, [(1, "n1", "door.opened", T0, "{}")], stream=s)
        assert (r.new, r.acked_upto, r.gaps) == (1, 2, ())


def test_a_stream_base_beyond_what_the_hub_saw_cannot_make_the_hub_ack_events_it_never_stored(
    tmp_path: Path,
) -> None:
    """A site (buggy, or hostile with its own broker login) declares a huge ``stream_base``
    for a new stream: without a legacy history nothing of the stream counts as stored, and
    with one, no more than the legacy stream's ``max_seq`` does."""
    with open_store(tmp_path / "hub.sqlite3") as store:
        fresh = "ab" * 16
        evs = [IncomingEvent(fresh, seq, f"f{seq}", "door.opened", T0, "{}") for seq in (1, 2, 3)]
        r = store.store_batch(SITE, EventBatch(events=evs, bases={fresh: 2**53 - 1}))
        assert (r.new, r.streams[fresh].acked_upto) == ({(fresh, 1), (fresh, 2), (fresh, 3)}, 3)

        other = "b1te"
        store.store_events(other, [(s, f"l{s}", "door.opened", T0, "{}") for s in range(1, 11)])  # legacy 1..10
        upgraded = "cd" * 16
        evs = [IncomingEvent(upgraded, seq, f"u{seq}", "door.opened", T0, "{}") for seq in (11, 12)]
        r = store.store_batch(other, EventBatch(events=evs, bases={upgraded: 1000}))
        assert r.streams[upgraded].base == 10
        assert (r.new, r.streams[upgraded].acked_upto) == ({(upgraded, 11), (upgraded, 12)}, 12)


def test_quarantined_messages_are_truncated_bounded_per_site_and_purged_by_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.store.sqlite import streams as store_streams

    monkeypatch.setattr(store_streams, "QUARANTINE_KEEP", 2)
    with open_store(tmp_path / "hub.sqlite3") as store:
        for i in range(3):
            big = bytes([i]) * (store_streams.QUARANTINE_BYTES + 10)
            store.store_batch(SITE, EventBatch(quarantined=[Quarantined(why=f"bad {i}", payload=big)]),
                              received_at=T0 + i)
        kept = store.quarantine(SITE)
        assert [q.why for q in kept] == ["bad 2", "bad 1"]  # the newest two; the count goes on
        assert all(len(q.payload) == store_streams.QUARANTINE_BYTES for q in kept)
        state = store.site_state(SITE)
        assert state is not None and state.quarantined == 3
        assert state.last_seen is None  # garbage alone is no sign of life
        store.purge_events(T0 + 2)
        assert [q.why for q in store.quarantine(SITE)] == ["bad 2"]
