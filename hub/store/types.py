"""What the hub's store holds: records, input shapes, store errors (``Store``: hub.store.api).

``hub.store.sqlite.SqliteStore`` implements ``Store`` on SQLite; a PostgreSQL store for a
multi-worker hub would implement the same Protocol. Times are Unix seconds (UTC):
integers for bookings, grants and caches, floats for what sites report.

Credential strings and members' names and e-mails live only here; records that hold
them keep them out of ``repr()`` so that logging a record cannot leak them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

from ..errors import HubError
from .streams import BatchStored as BatchStored  # noqa: PLC0414 (re-exported)
from .streams import EventBatch as EventBatch  # noqa: PLC0414
from .streams import IncomingEvent as IncomingEvent  # noqa: PLC0414
from .streams import Quarantined as Quarantined  # noqa: PLC0414
from .streams import StreamState as StreamState  # noqa: PLC0414


class StoreError(HubError):
    """A store operation was refused (unknown member or site, conflicting data)."""


class UnknownMember(StoreError):
    """The member does not exist."""


class UnknownSite(StoreError):
    """The site (or one of the doors named) is not configured."""


class InvalidCredential(StoreError):
    """The credential string has none of the PROTOCOL.md §1 forms."""


class CredentialConflict(StoreError):
    """The credential is already enrolled to another member."""


class CacheVersionConflict(StoreError):
    """Another writer recorded a cache version for this site in between; rebuild again."""


class UserExists(StoreError):
    """A dashboard user of that name exists already."""


def pseudonym(secret: bytes, member_id: str) -> str:
    """A member's pseudonymous reference (``who`` in caches and events): ``m-`` + 16 hex.

    HMAC-SHA256 of the member id under a hub secret, so it is stable, reveals neither the
    platform's member id nor a name, and the hub can map it back through its members."""
    return "m-" + hmac.new(secret, member_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


# --- input shapes -------------------------------------------------------------------------


class BookingLike(Protocol):
    """A normalized booking as the booking adapters produce it (times in Unix seconds)."""

    @property
    def id(self) -> str: ...
    @property
    def resource_id(self) -> str: ...
    @property
    def member_id(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def updated_at(self) -> float: ...
    @property
    def pin(self) -> str | None: ...
    @property
    def source(self) -> str: ...


def supersedes(new_updated_at: float, new_status: str, old_updated_at: float, old_status: str) -> bool:
    """Whether a booking version replaces the one held for the same id (PROTOCOL.md §5):
    a later ``updated_at`` (compared at full precision) wins, an earlier one never does; on
    an equal ``updated_at`` the newcomer wins unless it would undo a cancellation."""
    if new_updated_at != old_updated_at:
        return new_updated_at > old_updated_at
    return not (old_status == "cancelled" and new_status != "cancelled")


class RoomSpec(Protocol):
    """A room as configured (``hub.config.RoomConfig`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def capacity(self) -> int | None: ...
    @property
    def doors(self) -> Sequence[str]: ...
    @property
    def resources(self) -> Sequence[str]: ...


class SiteSpec(Protocol):
    """A site as configured (``hub.config.SiteConfig`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def doors(self) -> Sequence[str]: ...
    @property
    def rooms(self) -> Sequence[RoomSpec]: ...


class SiteStateChanges(TypedDict, total=False):
    """Fields of a site's state that ``update_site_state`` may set."""

    online: bool
    since: float
    last_seen: float
    boot: str
    software: str
    cache_version: int | None
    cache_expires_at: int | None
    clock_synced: bool
    outbox_pending: int
    lockdown: bool
    status: str | None


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: str
    name: str
    doors: tuple[str, ...]
    active: bool


@dataclass(frozen=True, slots=True)
class RoomRow:
    site_id: str
    id: str
    name: str
    capacity: int | None
    doors: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    who: str
    display_name: str = field(repr=False)
    email: str | None = field(repr=False)
    created_at: int


@dataclass(frozen=True, slots=True)
class Credential:
    id: int
    member_id: str
    #: The credential string (``em4100:0A00B1C2D3``); never log it.
    credential: str = field(repr=False)
    #: Its type (``em4100``, ``pin``, ...), safe to show.
    type: str
    label: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Grant:
    """A standing grant: the member's credentials open these doors of the site (all of
    them when ``doors`` is None) between ``valid_from`` and ``valid_until`` (None: unbounded)."""

    id: int
    member_id: str
    site_id: str
    doors: tuple[str, ...] | None
    valid_from: int | None
    valid_until: int | None
    label: str


@dataclass(frozen=True, slots=True)
class StoredBooking:
    id: str
    resource_id: str
    member_id: str
    start: int
    end: int
    status: str
    #: Unix seconds at full precision (microseconds), as the platform sent it.
    updated_at: float
    pin: str | None = field(repr=False)
    source: str
    #: The room the resource maps to (filled by site queries; None elsewhere).
    room_id: str | None = None


@dataclass(frozen=True, slots=True)
class BookingChanges:
    """What ``upsert_bookings`` changed: booking ids, and the sites whose caches they touch
    (the sites of the old and of the new resource, when a booking moved)."""

    changed: list[str]
    sites: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.changed)


@dataclass(frozen=True, slots=True)
class SyncState:
    source: str
    cursor: str | None = None
    last_ok_at: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    #: Consecutive failures since the last success.
    failures: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    site_id: str
    seq: int
    id: str
    type: str
    ts: float
    received_at: float
    payload: str
    #: The site's event stream ("": the legacy stream of a site from before streams).
    stream: str = ""


#: (seq, id, type, ts, payload JSON) as ``store_events`` takes it.
EventTuple = tuple[int, str, str, float, str]


@dataclass(frozen=True, slots=True)
class EventsStored:
    """Outcome of ``store_events``: how many were new, and what the site may be told."""

    new: int
    #: Every seq 1..acked_upto of the site is stored: the ``event/ack`` value.
    acked_upto: int
    #: Missing seq ranges (inclusive) below the highest seq seen.
    gaps: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SiteState:
    site_id: str
    online: bool = False
    since: float | None = None
    last_seen: float | None = None
    boot: str | None = None
    software: str | None = None
    cache_version: int | None = None
    cache_expires_at: int | None = None
    clock_synced: bool = False
    outbox_pending: int = 0
    lockdown: bool = False
    #: The last Status payload as JSON.
    status: str | None = None
    acked_upto: int = 0
    max_seq: int = 0
    gaps: tuple[tuple[int, int], ...] = ()
    #: The site's current event stream ("": the legacy stream); ``acked_upto``, ``max_seq``
    #: and ``gaps`` above are that stream's (``Store.event_streams`` has them all).
    stream: str = ""
    #: Events stored whose type, or a type-specific field, this hub does not know.
    unknown_types: int = 0
    #: Messages on the site's ``event`` topic that were not events (kept aside).
    quarantined: int = 0


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """A check-in or release for the booking platform (``kind``: ``check_in`` | ``release``)
    in the hub's queue. ``at`` is the check-in's time (the release's moment for a release);
    ``state``: ``pending`` (tried again at ``next_try``), ``delivered`` or ``failed`` (the
    platform refused it for good); ``last_error`` says why the last try did not go through."""

    booking_id: str
    kind: str
    site_id: str
    at: int
    state: str
    attempts: int
    next_try: float
    last_error: str | None
    created_at: float
    done_at: float | None


@dataclass(frozen=True, slots=True)
class CacheState:
    """A site's latest cache version and its last retained cache.full."""

    site_id: str
    version: int
    built_at: int
    n_entries: int
    #: Bytes of the latest version's entries as JSON (their sum): to compare deltas with.
    size: int
    retained_version: int | None
    retained_entries: int | None


@dataclass(frozen=True, slots=True)
class CacheLogRow:
    """How ``version`` differs from ``base_version``: entries added and changed (JSON
    arrays of Entry) and ids removed (JSON array of strings)."""

    version: int
    base_version: int
    built_at: int
    n_entries: int
    size: int
    added: str
    changed: str
    removed: str


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard account (``torwart-hub users``)."""

    name: str
    #: ``admin`` or ``caretaker``.
    role: str
    #: The sites the user may see; None: every site.
    sites: tuple[str, ...] | None
    #: ``scrypt$...`` (hub.dashboard.passwords); never log it.
    password_hash: str = field(repr=False)
    created_at: int
    email: str | None = None  # where the user's alerts go (hub/alerts); None: none


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A dashboard login session: the store keys it by a hash of the cookie's value."""

    user: User
    #: The session's CSRF token; never log it.
    csrf: str = field(repr=False)
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """The outcome of reserving a login attempt: ``wait`` seconds when a key is at its limit
    (nothing was recorded), else None and the ids of the rows recorded for it."""

    wait: float | None
    ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A card enrollment at a site (``torwart-hub cards enroll --site``), keyed by the id
    of the signed ``enroll`` command. ``status``: ``pending`` until the site's read is
    handled, then ``enrolled``, ``conflict`` (``detail``: the member the card belongs to),
    ``refused`` (``detail``: why), ``expired`` or ``cancelled``."""

    command_id: str
    site_id: str
    member_id: str
    reader: str
    created_at: int
    #: The last moment (hub time) a read for it is accepted.
    expires_at: int
    status: str
    detail: str | None
    credential_id: int | None
    done_at: float | None
    #: The site's window for the card (None: recorded before the store knew it).
    seconds: int | None = None
    #: When the site acknowledged the command (as the running hub saw it), and its error
    #: code when it refused it.
    acked_at: float | None = None
    ack_error: str | None = None
    #: The version of the site's cache first built with the new card (running hub).
    cache_version: int | None = None
