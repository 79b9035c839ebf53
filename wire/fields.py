"""The constrained field types of the wire messages (PROTOCOL.md): identifiers, credential
hashes, sequence numbers, times and texts, every number bounded. ``wire.messages`` and
``wire.events`` build on them; ``m.Ident`` and the rest stay reachable through messages."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from .topics import IDENT_PATTERN

__all__ = [
    "MAX_COUNT", "MAX_SEQ", "MAX_TIME", "AckStream", "Count", "Cred", "Ident", "NonEmpty", "Seq", "StreamBase",
    "StreamId", "Text", "UnixTime", "UnixTimeF", "Version",
]

#: A site, room, door or reader id (wire.topics.IDENT_PATTERN); the configs of both sides use it too.
Ident = Annotated[str, Meta(pattern=IDENT_PATTERN)]
Cred = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
# Every number bounded (a site may send anything; the hub stores numbers in SQLite's signed
# 64-bit integers and shows times as dates): see the bounds below.
#: The highest event seq and cache version (PROTOCOL.md §4: seq at most 2^53; versions are
#: max(previous + 1, now), far below). Exact in a float, hence in any JSON reader.
MAX_SEQ = 2**53
#: The last second a date can show (9999-12-31T23:59:59Z): every time on the wire, int or float.
MAX_TIME = 253_402_300_799
#: Counts and durations (outbox_pending, present, capacity, door.held_open seconds).
MAX_COUNT = 2**31 - 1
Seq = Annotated[int, Meta(ge=1, le=MAX_SEQ)]
Version = Annotated[int, Meta(ge=0, le=MAX_SEQ)]
UnixTime = Annotated[int, Meta(ge=0, le=MAX_TIME)]
#: Finite by construction: JSON has no NaN or Infinity, and 1e400 is refused as out of range.
UnixTimeF = Annotated[float, Meta(ge=0, le=MAX_TIME)]
Text = Annotated[str, Meta(max_length=256)]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=256)]
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
#: A site's event stream (PROTOCOL.md §4): 32 lower-case hex chars, made once with its outbox.
StreamId = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
#: A stream in an ``event/ack``: a StreamId, or "" for the legacy stream (no stream in events).
AckStream = Annotated[str, Meta(pattern=r"^(?:[0-9a-f]{32})?$")]
StreamBase = Annotated[int, Meta(ge=1, le=MAX_SEQ)]
