"""Fuzzing the hub's ingest of site messages: random bytes and mutations of valid payloads on
every inbound topic kind, into hub.ingest.Ingest over a real Store. Nothing may
crash it; nothing that does not decode as its wire type (for the right site and door) may
change a single row of the store, except on the event topic, where it is kept aside
(quarantined, counted) and never stored as an event (PROTOCOL.md §4)."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ingest import Ingest
from hub.store import open_store
from tests.strategies import struct
from wire import lenient
from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from .mutate import mutated

SITE = "minheim"
DOOR = "eingang"
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Rig:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = open_store(path)
        self.acks: list[tuple[str, str, int]] = []
        self.seen: list[m.Event] = []
        self.ingest = Ingest(self.store, lambda s, stream, upto: self.acks.append((s, stream, upto)),
                             lambda s, ev: self.seen.append(ev))

    def snapshot(self, tables: tuple[str, ...] = ("events", "event_streams", "event_quarantine", "site_state",
                                                  "door_states", "occupancy")) -> tuple[Any, ...]:
        """Every row a site message can change (of ``tables``)."""
        conn = sqlite3.connect(self.path)
        try:
            return tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables)
        finally:
            conn.close()

    def quarantined(self) -> int:
        state = self.store.site_state(SITE)
        return state.quarantined if state is not None else 0


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with tempfile.TemporaryDirectory() as d:
        r = Rig(Path(d) / "hub.sqlite3")
        yield r
        r.store.close()


def _valid(kind: Kind) -> st.SearchStrategy[bytes]:
    if kind is Kind.EVENT:
        events = st.sampled_from(list(m.EVENT_TYPES.values())).flatmap(struct)
        ours = events.map(lambda e: msgspec.structs.replace(e, site=SITE))
        return st.one_of(events, ours).map(m.encode)
    cls = {Kind.STATUS: m.Status, Kind.OCCUPANCY: m.Occupancy, Kind.DOOR: m.DoorState, Kind.CACHE_ACK: m.CacheAck,
           Kind.COMMAND_ACK: m.CommandAck}[kind]
    msgs = struct(cls)
    if kind is Kind.DOOR:
        msgs = st.one_of(msgs, msgs.map(lambda d: msgspec.structs.replace(d, door=DOOR)))
    return msgs.map(m.encode)


def _accepted(kind: Kind, payload: bytes) -> bool:
    """The oracle: would a correct hub take this message in?"""
    try:
        if kind is Kind.EVENT:  # any type: the common fields decide
            head = m.decode(payload, lenient.EventHead)
            return bool(head.site == SITE and (head.stream_base is m.UNSET or head.stream_base < head.seq))
        if kind is Kind.DOOR:
            return bool(m.decode(payload, m.DoorState).door == DOOR)
        cls = {Kind.STATUS: m.Status, Kind.OCCUPANCY: m.Occupancy, Kind.CACHE_ACK: m.CacheAck,
               Kind.COMMAND_ACK: m.CommandAck}[kind]
        m.decode(payload, cls)
        return True
    except WireError:
        return False


def _feed(rig: Rig, kind: Kind, payload: bytes) -> None:
    ing = rig.ingest
    calls: dict[Kind, Callable[[], object]] = {
        Kind.EVENT: lambda: ing.events(SITE, [payload]),
        Kind.STATUS: lambda: ing.status(SITE, payload),
        Kind.OCCUPANCY: lambda: ing.occupancy(SITE, payload),
        Kind.DOOR: lambda: ing.door(SITE, DOOR, payload),
        Kind.CACHE_ACK: lambda: ing.cache_ack(SITE, payload),
        Kind.COMMAND_ACK: lambda: ing.command_ack(SITE, payload),
    }
    calls[kind]()


INBOUND = [Kind.EVENT, Kind.STATUS, Kind.OCCUPANCY, Kind.DOOR, Kind.CACHE_ACK, Kind.COMMAND_ACK]


@pytest.mark.parametrize("kind", INBOUND, ids=[k.value for k in INBOUND])
@FUZZ
@given(data=st.data())
def test_garbage_on_any_inbound_topic_never_crashes_the_hub_nor_reaches_its_store(
    rig: Rig, kind: Kind, data: st.DataObject
) -> None:
    payload = data.draw(st.one_of(st.binary(max_size=300), _valid(kind).flatmap(mutated)), label="payload")
    before = rig.snapshot()
    events_before = rig.snapshot(("events",))
    quarantined = rig.quarantined()
    acks = len(rig.acks)
    _feed(rig, kind, payload)  # must not raise, whatever the bytes
    if _accepted(kind, payload):
        return
    if kind is not Kind.EVENT:
        assert rig.snapshot() == before, "a message that is not valid for this site changed the store"
        assert len(rig.acks) == acks, "garbage was acknowledged"
        return
    # Not an event of this site: kept aside and counted, never stored as an event, and
    # acknowledged exactly when its stream and seq can be read.
    assert rig.snapshot(("events",)) == events_before, "garbage was stored as an event"
    assert rig.quarantined() == quarantined + 1, "garbage on the event topic was not kept aside"
    try:
        m.decode(payload, lenient.EventPlace)
        readable = True
    except WireError:
        readable = False
    assert len(rig.acks) == acks + readable


@pytest.mark.parametrize("kind", INBOUND, ids=[k.value for k in INBOUND])
@FUZZ
@given(data=st.data())
def test_valid_messages_still_get_in_between_the_garbage(rig: Rig, kind: Kind, data: st.DataObject) -> None:
    payload = data.draw(_valid(kind), label="payload")
    _feed(rig, kind, payload)
    if kind is Kind.EVENT and _accepted(kind, payload):
        ev = m.decode(payload, m.AnyEvent)
        stream = "" if ev.stream is m.UNSET else ev.stream
        conn = sqlite3.connect(rig.path)
        try:
            stored = conn.execute("SELECT payload FROM events WHERE site_id = ? AND stream = ? AND seq = ?",
                                  (SITE, stream, ev.seq)).fetchone()
            (base,) = conn.execute("SELECT base FROM event_streams WHERE site_id = ? AND stream = ?",
                                   (SITE, stream)).fetchone()
        finally:
            conn.close()
        # This one, or an earlier event with its (stream, seq) (stored once); or a seq of the
        # site's legacy numbering, which a stream that continues it (stream_base) starts after.
        assert stored is not None or ev.seq <= base
