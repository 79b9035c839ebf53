"""One typed message per PROTOCOL.md payload, with strict decoding.

Decoding is strict about types and constraints (a wrong type, a bad identifier, a
missing required field is refused with the JSON path of the offending field) and
tolerant of unknown fields, because PROTOCOL.md lets implementations add fields.

The site's events (PROTOCOL.md §4) are in ``wire.events`` and the constrained field types
in ``wire.fields``; both are re-exported here, so callers write ``m.AccessGranted`` and
``m.Ident`` beside ``m.Status``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET as UNSET  # noqa: PLC0414  (re-exported: m.UNSET)
from msgspec import Meta, Struct, UnsetType, field

from .codec import PATH_RE

# Re-exported (explicitly, for mypy): callers write m.decode(data, m.Status).
from .codec import check_utf8 as check_utf8  # noqa: PLC0414
from .codec import decode as decode  # noqa: PLC0414
from .codec import encode as encode  # noqa: PLC0414
from .codec import to_builtins as to_builtins  # noqa: PLC0414
from .errors import MALFORMED, WireError

# Re-exported: one namespace for every wire type (m.Ident, m.AccessGranted, m.Status).
from .events import *  # noqa: F403
from .fields import *  # noqa: F403
from .fields import MAX_SEQ, AckStream, Count, Cred, Ident, NonEmpty, StreamId, Text, UnixTime, UnixTimeF, Version

# Every struct is keyword-only and immutable; unknown fields are ignored on decode.


# --- hub -> site bodies (inside signed envelopes) -----------------------------------


class Entry(Struct, kw_only=True, frozen=True):
    """One grant in a site cache: a credential hash allowed through some doors."""

    id: NonEmpty
    cred: Cred
    doors: list[Ident]
    from_: UnixTime | None = field(default=None, name="from")
    until: UnixTime | None = None
    who: Text
    ref: Text | None = None
    room: Ident | None = None

    def __post_init__(self) -> None:
        if self.from_ is not None and self.until is not None and self.from_ > self.until:
            raise ValueError(f"entry {self.id!r}: from ({self.from_}) is after until ({self.until})")


_entry_decoder = msgspec.json.Decoder(Entry)


def _unique_ids(entries: list[Entry]) -> None:
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            raise ValueError(f"entry id {e.id!r} appears twice")
        seen.add(e.id)


class Body(Struct, tag_field="type", kw_only=True, frozen=True):
    """Base of everything the hub signs for a site."""

    site: Ident
    issued_at: UnixTime
    expires_at: UnixTime


#: One of the hub's Ed25519 public keys: the standard base64 of its 32 raw bytes (canonical:
#: the last character before the padding carries no stray bits).
PublicKey = Annotated[str, Meta(pattern=r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
#: A key id: the first 16 hex chars of SHA-256 over the raw public key (PROTOCOL.md §3).
KeyId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}$")]
#: ``keys`` of a cache.full (PROTOCOL.md §3): the signing keys the site trusts once the cache
#: is applied, one or two; UNSET (absent on the wire) changes nothing.
TrustedKeys = Annotated[list[PublicKey], Meta(min_length=1, max_length=2)]


def _distinct_keys(keys: list[str] | UnsetType) -> None:
    if not isinstance(keys, UnsetType) and len(set(keys)) != len(keys):
        raise ValueError("keys names the same key twice")


class CacheFull(Body, tag="cache.full", kw_only=True, frozen=True):
    version: Version
    entries: list[Entry]
    keys: TrustedKeys | UnsetType = UNSET

    def __post_init__(self) -> None:
        _unique_ids(self.entries)
        _distinct_keys(self.keys)


class CacheDelta(Body, tag="cache.delta", kw_only=True, frozen=True):
    version: Version
    base_version: Version
    upsert: list[Entry]
    remove: list[NonEmpty]

    def __post_init__(self) -> None:
        if self.version <= self.base_version:
            raise ValueError(f"version {self.version} is not after base_version {self.base_version}")
        _unique_ids(self.upsert)


class CacheFullStream(Body, tag="cache.full", kw_only=True, frozen=True):
    """The same ``cache.full`` on the wire, with its entries left undecoded: a site
    decodes them one at a time while it inserts them (``iter_entries``), so that applying
    100,000 entries never holds 100,000 entry objects. Duplicate ids are left to the
    store (a primary key) to find."""

    version: Version
    entries: list[msgspec.Raw]
    keys: TrustedKeys | UnsetType = UNSET

    def __post_init__(self) -> None:
        _distinct_keys(self.keys)

    def iter_entries(self) -> Iterator[Entry]:
        """Each entry, validated like ``Entry``; WireError(malformed) names ``$.entries[i]...``."""
        for i, raw in enumerate(self.entries):
            try:
                yield _entry_decoder.decode(raw)
            except msgspec.ValidationError as exc:
                msg = str(exc)
                m = PATH_RE.search(msg)
                path = f"$.entries[{i}]" + (m.group(1)[1:] if m else "")
                raise WireError(MALFORMED, PATH_RE.sub("", msg) + f" - at `{path}`", field=path) from None


Action = Literal["unlock", "lockdown", "lockdown_end", "checkout_all", "enroll"]


class Command(Body, tag="command", kw_only=True, frozen=True):
    id: NonEmpty
    action: Action
    door: Ident | None = None
    seconds: Annotated[int, Meta(ge=1, le=86400)] | None = None
    room: Ident | None = None
    reader: Ident | None = None

    def __post_init__(self) -> None:
        if self.action == "unlock" and self.door is None:
            raise ValueError("unlock needs a door")
        if self.action == "enroll":
            if self.reader is None:
                raise ValueError("enroll needs a reader")
            if self.seconds is None or self.seconds > 120:
                raise ValueError("enroll needs seconds between 1 and 120")


SignedBody = CacheFull | CacheDelta | Command
#: What a site decodes: a cache.full with its entries still raw (see CacheFullStream).
SignedBodyStream = CacheFullStream | CacheDelta | Command


# --- site -> hub (the events are in wire/events.py) -------------------------------------


class Status(Struct, kw_only=True, frozen=True):
    """Retained site status; also the Last Will (``state`` = offline)."""

    state: Literal["online", "offline"]
    ts: UnixTimeF = 0.0
    boot: Text = ""
    software: Text = ""
    cache_version: Version | None = None
    cache_expires_at: UnixTime | None = None
    clock_synced: bool = False
    outbox_pending: Count = 0
    lockdown: bool = False
    #: The site's event stream (PROTOCOL.md §4); absent from sites from before streams.
    stream: StreamId | UnsetType = UNSET
    #: An added field: why the site's local storage fails (e.g. the disk is full), None
    #: while it works. The site keeps deciding from its cache meanwhile.
    storage_error: Annotated[str, Meta(max_length=512)] | None = None
    #: An added field: the kids (PROTOCOL.md §3) of the hub signing keys the site trusts now;
    #: absent from sites from before key rotation (the hub does not switch keys for them).
    keys: Annotated[list[KeyId], Meta(max_length=2)] | UnsetType = UNSET


class DoorState(Struct, kw_only=True, frozen=True):
    door: Ident
    locked: bool
    open: bool | None
    alarm: Literal["held_open", "forced_open"] | None
    mode: Literal["normal", "office_hours", "lockdown"]
    ts: UnixTimeF


class RoomOccupancy(Struct, kw_only=True, frozen=True):
    present: Count
    capacity: Count | None
    who: list[Text]


class Occupancy(Struct, kw_only=True, frozen=True):
    ts: UnixTimeF
    rooms: dict[Ident, RoomOccupancy]


class EventAck(Struct, kw_only=True, frozen=True):
    """Every event of stream ``stream`` with seq ≤ ``upto`` is stored; ``stream`` is absent
    in an ack of a hub from before streams (one numbering per site)."""

    stream: AckStream | UnsetType = UNSET
    upto: Annotated[int, Meta(ge=0, le=MAX_SEQ)]


class CacheAck(Struct, kw_only=True, frozen=True):
    version: Version | None
    ok: bool
    error: Text | None
    ts: UnixTimeF


class CommandAck(Struct, kw_only=True, frozen=True):
    id: Text
    ok: bool
    error: Text | None
    ts: UnixTimeF


# --- booking platform (PROTOCOL.md §5) -------------------------------------------------

AwareTime = Annotated[datetime, Meta(tz=True)]


class Booking(Struct, kw_only=True, frozen=True):
    id: NonEmpty
    resource_id: NonEmpty
    member_id: NonEmpty
    start: AwareTime
    end: AwareTime
    status: Literal["confirmed", "cancelled"]
    updated_at: AwareTime
    pin: Annotated[str, Meta(pattern=r"^[0-9]{4,12}$")] | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"booking {self.id!r}: end is not after start")


class BookingPage(Struct, kw_only=True, frozen=True):
    """One page; items stay raw so that one bad booking can be skipped, not the page."""

    items: list[msgspec.Raw]
    next_page_token: str | None = None
