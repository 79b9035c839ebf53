"""Every number a site sends, at the edges of the integer types (negative, 2^31, 2^53, 2^63,
2^64), from a site's own broker login into the real hub service: nothing crashes or logs a
traceback, nothing out of the wire bounds reaches the store, and meanwhile another site's
events are stored and acknowledged and its cache follows a booking cancellation.

The fields are found from the wire types themselves (msgspec.inspect), so a number field
added to a site → hub message later is fuzzed without touching this test."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import msgspec.inspect as mi
import pytest

from hub.publisher import VERSION_AHEAD
from testkit.dashboard import add_user, login
from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from ._hubrig import A, B, Rig

VALUES = [-1, -(2**31), 2**31 - 1, 2**31, 2**31 + 1, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64]
#: Fuzzed events get seqs from here on (or the fuzzed value): site a's contiguous seqs 1, 2, …
#: stay free for the barrier events that prove the hub has handled everything before them.
FUZZ_SEQ = 10**6
DOOR, ROOM = "eingang", "coworking"

MESSAGES: dict[Kind, list[type[Any]]] = {
    Kind.EVENT: list(m.EVENT_TYPES.values()),
    Kind.STATUS: [m.Status],
    Kind.OCCUPANCY: [m.Occupancy],
    Kind.DOOR: [m.DoorState],
    Kind.CACHE_ACK: [m.CacheAck],
    Kind.COMMAND_ACK: [m.CommandAck],
}
Path_ = tuple[str, ...]


def _numeric(t: mi.Type) -> bool:
    types = t.types if isinstance(t, mi.UnionType) else (t,)
    return any(isinstance(x, (mi.IntType, mi.FloatType)) for x in types)


def _sample(t: mi.Type) -> Any:
    """A valid value of type ``t`` (for a site → hub message of site a)."""
    if isinstance(t, mi.UnionType):
        return _sample(next(x for x in t.types if not isinstance(x, mi.NoneType)))
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return "0" * 32 if "{32}" in t.pattern else DOOR
        return "x"
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.IntType):
        return max(1, t.ge or 0)
    if isinstance(t, mi.FloatType):
        return 1_800_000_000.0
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.ListType):
        return []
    if isinstance(t, mi.DictType):
        return {ROOM: _sample(t.value_type)}
    if isinstance(t, mi.StructType):
        return _base(t.cls)
    if isinstance(t, mi.NoneType):
        return None
    raise NotImplementedError(repr(t))


def _info(cls: type[Any]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


def _base(cls: type[Any]) -> dict[str, Any]:
    info = _info(cls)
    doc = {f.encode_name: _sample(f.type) for f in info.fields}
    if info.tag_field is not None:
        doc[info.tag_field] = info.tag
    if "site" in doc:
        doc["site"] = A
    if cls is m.Status:
        doc["state"] = "online"  # an online status is the one whose numbers the hub records
    return doc


def _paths(t: mi.Type, prefix: Path_ = ()) -> list[Path_]:
    """Where ``t`` holds numbers (through structs and dicts)."""
    if isinstance(t, mi.UnionType):
        return [p for x in t.types if not isinstance(x, mi.NoneType) for p in _paths(x, prefix)] \
            if not _numeric(t) else [prefix]
    if isinstance(t, (mi.IntType, mi.FloatType)):
        return [prefix]
    if isinstance(t, mi.StructType):
        return [p for f in t.fields for p in _paths(f.type, (*prefix, f.encode_name))]
    if isinstance(t, mi.DictType):
        return _paths(t.value_type, (*prefix, ROOM))
    return []


def _set(doc: dict[str, Any], path: Path_, value: int) -> dict[str, Any]:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def cases(kind: Kind) -> list[tuple[type[Any], Path_, int]]:
    return [(cls, path, v) for cls in MESSAGES[kind] for path in _paths(_info(cls)) for v in VALUES]


def test_every_number_field_of_every_site_message_is_fuzzed() -> None:
    """The list is derived, so check it is not empty where it must not be: the fields the
    issue names are all in it."""
    found = {f"{cls.__name__}.{'.'.join(p)}" for kind in MESSAGES for cls, p, _ in cases(kind)}
    for name in ("AccessGranted.seq", "AccessGranted.ts", "AccessGranted.cache_version", "DoorHeldOpen.seconds",
                 "CacheApplied.version", "Status.cache_version", "Status.outbox_pending", "Status.cache_expires_at",
                 "Occupancy.rooms.coworking.present", "Occupancy.rooms.coworking.capacity", "DoorState.ts",
                 "CacheAck.version", "CommandAck.ts"):
        assert name in found, name


def _accepted(kind: Kind, cls: type[Any], payload: bytes) -> bool:
    try:
        m.decode(payload, m.AnyEvent if kind is Kind.EVENT else cls)
        return True
    except WireError:
        return False


@pytest.mark.parametrize("kind", list(MESSAGES), ids=[k.value for k in MESSAGES])
def test_huge_and_negative_numbers_from_a_site_crash_nothing_and_leave_other_sites_alone(
    rig: Rig, kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    cancelled = rig.book(B)
    for _ in range(3):
        rig.book(A)
    rig.sync()
    held = rig.b_holds_latest()
    rig.publish(A, Kind.STATUS, m.encode(m.Status(state="online", ts=1_800_000_000.0)))

    todo = cases(kind)
    stored: list[int] = []  # seqs of the fuzzed events the hub must have stored
    for i, (cls, path, value) in enumerate(todo):
        doc = _base(cls)
        if kind is Kind.EVENT:
            doc["id"] = uuid.uuid4().hex
            doc["seq"] = FUZZ_SEQ + i
            # stream_base moves where a stream begins (PROTOCOL.md §4 upgrade path): fuzzed in a
            # stream of its own each time, so that it cannot hide the other cases' events.
            if path == ("stream_base",):
                doc["stream"] = uuid.uuid4().hex
            else:
                doc.pop("stream_base", None)
        payload = m.encode(_set(doc, path, value))
        if kind is Kind.EVENT and path != ("stream_base",) and _accepted(kind, cls, payload):
            stored.append(value if path == ("seq",) else FUZZ_SEQ + i)
        rig.publish(A, kind, payload, door=DOOR if kind is Kind.DOOR else None)
        if i % 40 == 39:
            rig.b_events_acked(2)  # meanwhile, site b's events are stored and acknowledged
    rig.a_barrier()  # everything site a sent has been handled

    rig.b_events_acked(2)
    rig.platform.cancel(cancelled)  # and site b's cache still follows its bookings
    rig.sync()
    body = rig.wait_b_cache(above=held)
    assert (isinstance(body, m.CacheDelta) and body.remove) or all(e.ref != cancelled for e in body.entries)

    rig.alive()
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    if stored:
        seqs = {s for (s,) in rig.sql("SELECT seq FROM events WHERE site_id = ?", A)}
        assert set(stored) <= seqs, "a valid event was not stored"
    # Nothing beyond the wire's bounds reached the store, and site a's cache counter is sane.
    assert rig.sql("SELECT COUNT(*) FROM events WHERE seq < 1 OR seq > ? OR ts < 0 OR ts > ?",
                   m.MAX_SEQ, m.MAX_TIME) == [(0,)]
    (state,) = rig.sql("SELECT cache_version, cache_expires_at, outbox_pending, acked_upto, max_seq "
                       "FROM site_state WHERE site_id = ?", A)
    assert all(v is None or 0 <= v <= m.MAX_SEQ for v in state)
    assert state[2] <= m.MAX_COUNT and (state[1] is None or state[1] <= m.MAX_TIME)
    latest = rig.svc.call(lambda: rig.svc.hub.caches.latest_version(A))
    assert latest is not None and latest <= time.time() + VERSION_AHEAD
    assert rig.refusals(B) == {}
    # The dashboard still shows both sites and the county.
    dash = login(rig.county.http_url, "boss", add_user(rig.county, "boss", "admin"))
    for page in ("/", f"/sites/{A}", f"/sites/{B}", f"/api/v1/sites/{A}"):
        assert dash.get(rig.county.http_url + page, timeout=20).status_code == 200, page
