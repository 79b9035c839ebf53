"""The durable outbox: seq continuity (across reopen, purge and SIGKILL), ack/pending/resend
semantics, retention, validation, and a full disk."""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from edge.errors import StorageError
from edge.outbox import InvalidEvent, Outbox
from tests.edge._faults import Child, fill
from wire import messages as m

SITE, BOOT = "minheim", "b00t"
T0 = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture
def ob(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db", SITE, BOOT) as o:
        yield o


def opened(o: Outbox, ts: float = T0, door: str = "front") -> bytes:
    return o.emit("door.opened", ts=ts, clock_synced=True, door=door)


def seqs(o: Outbox, **kw: int) -> list[int]:
    return [s for s, _ in o.pending(**kw)]


# --- emitting ------------------------------------------------------------------------------


def test_an_emitted_event_is_a_valid_protocol_event(ob: Outbox) -> None:
    raw = ob.emit("access.granted", ts=T0 + 0.25, clock_synced=False, door="front", cred="ab" * 16, who="m-17",
                  ref="bk-1", reason="booking")
    ev = m.decode(raw, m.AnyEvent)
    assert isinstance(ev, m.AccessGranted)
    assert (ev.seq, ev.site, ev.boot, ev.ts, ev.clock_synced) == (1, SITE, BOOT, T0 + 0.25, False)
    assert (ev.door, ev.cred, ev.who, ev.ref, ev.reason) == ("front", "ab" * 16, "m-17", "bk-1", "booking")
    assert len(ev.id) == 32 and int(ev.id, 16) >= 0
    assert ob.pending() == [(1, raw)]


def test_seq_starts_at_one_and_grows_by_one_with_unique_ids(ob: Outbox) -> None:
    events = [msgspec.json.decode(opened(ob)) for _ in range(20)]
    assert [e["seq"] for e in events] == list(range(1, 21))
    assert len({e["id"] for e in events}) == 20
    assert ob.last_seq == 20


def test_seq_continues_after_reopening(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", SITE, "boot-1") as o:
        for _ in range(3):
            opened(o)
    with Outbox(tmp_path / "o.db", SITE, "boot-2") as o:
        ev = msgspec.json.decode(opened(o))
        assert (ev["seq"], ev["boot"]) == (4, "boot-2")
        assert seqs(o) == [1, 2, 3, 4]


@pytest.mark.parametrize(("type_", "fields", "why"), [
    ("door.exploded", {"door": "front"}, "unknown event type"),
    ("door.opened", {}, "door"),                                      # missing field
    ("door.opened", {"door": "Front"}, "door"),                       # not an identifier
    ("door.opened", {"door": "front", "colour": "red"}, "colour"),    # not a field of the type
    ("door.opened", {"door": "front", "seq": 99}, "set by the outbox"),
    ("access.denied", {"door": "front", "cred": None, "reason": "bad_vibes"}, "reason"),
    ("door.held_open", {"door": "front", "seconds": "long"}, "seconds"),
])
def test_an_invalid_event_is_refused_and_uses_no_seq(ob: Outbox, type_: str, fields: dict[str, object],
                                                      why: str) -> None:
    with pytest.raises(InvalidEvent, match=why):
        ob.emit(type_, ts=T0, clock_synced=True, **fields)
    assert ob.last_seq == 0
    assert msgspec.json.decode(opened(ob))["seq"] == 1


# --- acks, pending, resending -------------------------------------------------------------


def test_pending_lists_unacked_events_in_order_until_acked(ob: Outbox) -> None:
    sent = [opened(ob) for _ in range(5)]
    assert ob.pending() == list(zip(range(1, 6), sent, strict=True))
    assert ob.pending_count() == 5
    assert ob.ack(3) == 3
    assert ob.pending() == list(zip(range(4, 6), sent[3:], strict=True))
    assert (ob.acked_upto, ob.pending_count()) == (3, 2)


def test_pending_pages_with_limit_and_after_seq(ob: Outbox) -> None:
    for _ in range(10):
        opened(ob)
    assert seqs(ob, limit=3) == [1, 2, 3]
    assert seqs(ob, limit=3, after_seq=3) == [4, 5, 6]
    assert seqs(ob, after_seq=9) == [10]
    ob.ack(5)
    assert seqs(ob, limit=2, after_seq=2) == [6, 7]  # never below the acked seq


def test_unacked_events_are_resent_unchanged_even_after_a_restart(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", SITE, "boot-1") as o:
        first = [opened(o) for _ in range(3)]
        o.ack(1)
    with Outbox(tmp_path / "o.db", SITE, "boot-2") as o:
        assert o.pending() == [(2, first[1]), (3, first[2])]  # the same bytes: the hub dedupes by seq


def test_ack_is_idempotent_and_never_goes_backwards(ob: Outbox) -> None:
    for _ in range(5):
        opened(ob)
    assert ob.ack(4) == 4
    assert ob.ack(4) == 0
    assert ob.ack(2) == 0
    assert ob.ack(0) == 0
    assert ob.acked_upto == 4
    assert ob.ack(5) == 1
    assert ob.pending() == []


def test_an_ack_beyond_the_last_event_is_ignored_with_a_warning(ob: Outbox, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    for _ in range(3):
        opened(ob)
    with caplog.at_level(logging.WARNING, logger="edge.outbox"):
        assert ob.ack(7) == 0
    assert "up to 7" in caplog.text
    assert (ob.acked_upto, seqs(ob)) == (0, [1, 2, 3])


def test_recent_shows_the_newest_events_first_with_their_ack_state(ob: Outbox) -> None:
    for door in ("a", "b", "c"):
        opened(ob, door=door)
    ob.ack(2)
    recent = ob.recent(2)
    assert [(e["seq"], e["door"], e["acked"]) for e in recent] == [(3, "c", False), (2, "b", True)]
    assert recent[0]["type"] == "door.opened"


def test_a_read_only_outbox_shows_what_the_agent_commits(ob: Outbox) -> None:
    opened(ob)
    with Outbox(ob.path, SITE, "status", read_only=True) as reader:
        assert (reader.last_seq, reader.pending_count()) == (1, 1)
        opened(ob)
        assert reader.last_seq == 2
        with pytest.raises(StorageError):
            opened(reader)
    assert ob.last_seq == 2


# --- retention -------------------------------------------------------------------------------------


def test_purge_deletes_only_acked_events_older_than_retention(ob: Outbox) -> None:
    for age in (40, 35, 31, 29, 40, 1):  # days before now
        opened(ob, ts=T0 - age * DAY)
    ob.ack(4)
    now = T0
    assert ob.purge(now, retention_days=30) == 3  # seq 1-3: acked and older than 30 days
    assert [e["seq"] for e in ob.recent(10)] == [6, 5, 4]
    assert seqs(ob) == [5, 6]  # seq 5 is 40 days old but unacked: kept
    assert ob.purge(now, retention_days=30) == 0


def test_seq_is_never_reused_after_everything_is_purged(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", SITE, BOOT) as o:
        for _ in range(5):
            opened(o, ts=T0 - 100 * DAY)
        o.ack(5)
        assert o.purge(T0, 1) == 5
        assert o.recent(10) == []
    with Outbox(tmp_path / "o.db", SITE, BOOT) as o:
        assert msgspec.json.decode(opened(o))["seq"] == 6
        assert (o.pending_count(), seqs(o)) == (1, [6])


# --- real process kills ------------------------------------------------------------------------------


def test_seq_has_no_gap_or_repeat_across_sigkills(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    rng = random.Random(4711)
    reported_all: set[int] = set()
    last = 0
    for _ in range(15):
        child = Child("outbox", str(db))
        try:
            start = child.readline()
            assert start == f"start {last}"
            first = child.readline()
            assert first == str(last + 1), "seq did not continue where the killed process stopped"
            assert child.kill_after(rng.uniform(0.0, 0.15))
            reported = {int(first), *map(int, child.rest())}
        finally:
            child.close()
        assert not reported & reported_all, "a seq was reported twice"
        reported_all |= reported
        with Outbox(db, SITE, "check", read_only=True) as o:
            last = o.last_seq
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT seq, id, data FROM events ORDER BY seq").fetchall()
        assert [r[0] for r in rows] == list(range(1, last + 1))  # no gap, nothing lost
        assert len({r[1] for r in rows}) == len(rows)
        assert all(msgspec.json.decode(r[2])["seq"] == r[0] for r in rows)
        assert reported_all <= set(range(1, last + 1))  # everything reported is committed
        assert last - max(reported_all) <= 1  # at most the one in flight when killed
    assert last >= 30


# --- a full disk -------------------------------------------------------------------------------------


def test_on_a_full_disk_emit_fails_and_committed_events_remain(small_fs: Path) -> None:
    with Outbox(small_fs / "outbox.db", SITE, BOOT) as o:
        committed = [opened(o) for _ in range(5)]
        filler = fill(small_fs)
        with pytest.raises(StorageError, match=r"door\.opened"):
            for _ in range(1000):  # the WAL may have a little room left
                committed.append(opened(o))
        assert o.last_seq == len(committed)
        assert o.pending() == list(zip(range(1, len(committed) + 1), committed, strict=True))
        filler.unlink()
        # The failed event used no seq: the next one follows without a gap.
        assert msgspec.json.decode(opened(o))["seq"] == len(committed) + 1
