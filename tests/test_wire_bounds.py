"""Every number a site sends has a bound in wire.messages (issue #10): the bound itself
decodes, one above it and -1 are refused as malformed, naming the field. Seqs and versions
are at most 2^53 (PROTOCOL.md §4), times at most 9999-12-31T23:59:59Z, counts and
durations at most 2^31 - 1."""

from __future__ import annotations

from typing import Any

import pytest

from wire import messages as m
from wire.errors import WireError

EVENT = {"type": "door.opened", "id": "e1", "site": "minheim", "seq": 1, "boot": "b", "ts": 1.0,
         "clock_synced": True, "door": "eingang"}
STATUS = {"state": "online", "ts": 1.0, "cache_version": 1, "cache_expires_at": 1, "outbox_pending": 0}
OCC = {"ts": 1.0, "rooms": {"saal": {"present": 0, "capacity": 8, "who": []}}}
ACK = {"version": 1, "ok": True, "error": None, "ts": 1.0}

# (type, valid message, path to the number, its highest valid value)
BOUNDS: list[tuple[Any, dict[str, Any], tuple[str, ...], int]] = [
    (m.AnyEvent, EVENT, ("seq",), 2**53),
    (m.AnyEvent, EVENT, ("ts",), m.MAX_TIME),
    (m.AnyEvent, {**EVENT, "type": "access.denied", "cred": None, "reason": "lockdown", "cache_version": 1},
     ("cache_version",), 2**53),
    (m.AnyEvent, {**EVENT, "type": "door.held_open", "seconds": 1.0}, ("seconds",), 2**31 - 1),
    (m.AnyEvent, {**EVENT, "type": "cache.applied", "version": 1}, ("version",), 2**53),
    (m.Status, STATUS, ("ts",), m.MAX_TIME),
    (m.Status, STATUS, ("cache_version",), 2**53),
    (m.Status, STATUS, ("cache_expires_at",), m.MAX_TIME),
    (m.Status, STATUS, ("outbox_pending",), 2**31 - 1),
    (m.Occupancy, OCC, ("ts",), m.MAX_TIME),
    (m.Occupancy, OCC, ("rooms", "saal", "present"), 2**31 - 1),
    (m.Occupancy, OCC, ("rooms", "saal", "capacity"), 2**31 - 1),
    (m.DoorState, {"door": "eingang", "locked": True, "open": None, "alarm": None, "mode": "normal", "ts": 1.0},
     ("ts",), m.MAX_TIME),
    (m.CacheAck, ACK, ("version",), 2**53),
    (m.CacheAck, ACK, ("ts",), m.MAX_TIME),
    (m.CommandAck, {"id": "c1", "ok": True, "error": None, "ts": 1.0}, ("ts",), m.MAX_TIME),
    (m.EventAck, {"upto": 0}, ("upto",), 2**53),
]


def _with(doc: dict[str, Any], path: tuple[str, ...], value: int) -> bytes:
    def put(node: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        head, *rest = keys
        return {**node, head: put(node[head], tuple(rest)) if rest else value}

    return m.encode(put(doc, path))


@pytest.mark.parametrize(("cls", "doc", "path", "top"), BOUNDS,
                         ids=[f"{getattr(c, '__name__', 'Event')}.{'.'.join(p)}" for c, _, p, _ in BOUNDS])
def test_every_number_a_site_sends_is_bounded(cls: Any, doc: dict[str, Any], path: tuple[str, ...], top: int) -> None:
    m.decode(_with(doc, path, top), cls)  # the bound itself is valid
    for bad in (top + 1, -1, 2**63, 2**64):
        with pytest.raises(WireError) as exc:
            m.decode(_with(doc, path, bad), cls)
        assert exc.value.code == "malformed" and str(exc.value.field).endswith(f".{path[-1]}"), exc.value


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN", b"Infinity"])
def test_a_time_that_is_not_a_finite_number_is_refused(number: bytes) -> None:
    with pytest.raises(WireError):
        m.decode(b'{"version":1,"ok":true,"error":null,"ts":' + number + b"}", m.CacheAck)
