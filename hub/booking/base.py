"""What every booking platform adapter returns, whatever the platform speaks.

An adapter turns one platform's view of bookings into :class:`PlatformBooking` values and
reports a sync as a :class:`SyncResult`. Adapters only read and raise: they keep no
bookings between calls, so a failing platform can never take the last good bookings away
from the hub. The one piece of state a sync produces, the cursor, travels in the result;
the caller persists it and hands it back as ``since`` on the next ``fetch``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hub.errors import HubError, SyncError
from hub.store import supersedes
from wire.messages import Booking

if TYPE_CHECKING:
    from .transport import HttpPolicy

Status = Literal["confirmed", "cancelled"]


class UnsupportedOperation(HubError):
    """The adapter's platform cannot do this (e.g. check in against a read-only ICS feed)."""


class WriteFailed(SyncError):
    """A check-in or release the platform did not accept.

    ``permanent``: the platform refused this request for good (HTTP 4xx other than 408 and
    429; 401 and 403 concern the hub's token, not the request, and are not permanent), so
    sending it again cannot help. Otherwise (no answer, timeout, 408, 429, 5xx, 401/403)
    it may succeed later, and not before ``retry_after`` seconds when the platform said so
    (``Retry-After`` on 429 or 503). ``status`` is the HTTP status, None without an answer.
    """

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class PlatformBooking:
    """One booking, normalized across adapters.

    Times are Unix seconds, UTC; ``updated_at`` keeps the platform's full precision
    (microseconds) and orders versions of the same ``id`` (``hub.store.supersedes``: the
    later wins; an equal one never undoes a cancellation). ``source`` names the adapter instance that
    produced it (``"rest"``, ``"ics"``, ``"webhook"`` unless configured otherwise).
    """

    id: str
    resource_id: str
    member_id: str
    start: int
    end: int
    status: Status
    updated_at: float
    pin: str | None = field(repr=False)  # a door credential: kept out of logs
    source: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """An item a sync left out, and why: ``id`` is the booking id (REST) or the event UID
    (ICS), None when the item had no usable id.

    ``reason`` never holds a credential, a token or an e-mail address."""

    id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of one ``fetch``.

    ``bookings`` holds each id once, in its newest version, sorted by (updated_at, id).
    ``cursor`` is the high-water mark to pass back as ``since`` next time (None: the
    adapter has no incremental sync, or nothing has been seen yet). ``pages`` counts the
    HTTP documents read (pages for REST, feeds for ICS).

    ``complete`` says that ``bookings`` is the platform's whole set, within ``window``
    (Unix seconds, start inclusive, end exclusive) when that is set: a booking of this
    source missing from a complete result is gone from the platform, except that a booking
    whose id appears in ``skipped`` was present but unreadable, so the caller should keep
    what it had for it.
    """

    bookings: tuple[PlatformBooking, ...]
    cursor: int | None
    pages: int
    skipped: tuple[Skipped, ...] = ()
    complete: bool = False
    window: tuple[int, int] | None = None


class BookingAdapter(Protocol):
    """A booking platform as the hub sees it.

    ``fetch`` raises :class:`hub.errors.SyncError` when the platform cannot be read; the
    caller then keeps its last good bookings and cursor. ``check_in`` and ``release``
    raise :class:`WriteFailed` (a SyncError) when the platform does not accept them, and
    :class:`UnsupportedOperation` when ``supports_write`` is False. An adapter that never
    calls the member resolver it was built with may say so with a class attribute
    ``resolves_members = False`` (the hub then reads no members before a sync).
    """

    @property
    def supports_write(self) -> bool:
        """True when check_in and release reach the platform."""
        ...

    def fetch(self, since: int | None) -> SyncResult:
        """Bookings changed at or after ``since`` (all when None, or when the platform has no
        incremental sync: see ``SyncResult.complete``)."""
        ...

    def check_in(self, booking_id: str, at: int) -> None:
        """Tell the platform the member arrived at ``at`` (Unix seconds)."""
        ...

    def release(self, booking_id: str, reason: str = "no_show") -> None:
        """Give the room back (the member did not come)."""
        ...

    def close(self) -> None:
        """Release network resources; the adapter is not used afterwards."""
        ...


#: A lower-case e-mail address → the member id, or None for people the hub does not know.
MemberResolver = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Wording:
    """How the hub's sync and CLI speak of what an adapter reads; the defaults suit a
    paged HTTP API.

    ``document``: one HTTP document as it arrives (``page 1: HTTP 200``). ``documents``:
    the documents of a result, ``{n}`` their count (``12 bookings in 3 pages``).
    ``reads_all``: the line before each fetch of an adapter that reads everything every
    time, ``{source}`` the source's name; None: ``reading bookings from SOURCE`` and what
    ``since`` asks for."""

    document: str = "page"
    documents: str = "in {n} pages"
    reads_all: str | None = None

    def reading(self, source: str, since: int | None) -> str:
        """The line said before a fetch from ``source`` with cursor ``since``."""
        if self.reads_all is not None:
            return self.reads_all.format(source=source)
        return (f"reading bookings from {source}"
                + (" (all of them: first sync)" if since is None else f" changed since {iso_z(since)}"))

    def counted(self, pages: int) -> str:
        """``SyncResult.pages`` in words (``in 3 pages``, ``from 2 feeds``)."""
        return self.documents.format(n=pages)


@dataclass(frozen=True, slots=True)
class AdapterType:
    """What an adapter module offers the hub, as its module attribute ``ADAPTER`` (see
    :mod:`.registry`: one line there names the module).

    ``name``: the ``[booking] adapter`` value (and the default source name). ``build(cfg,
    resolve_member, policy)``: the adapter ``cfg.booking`` describes (ConfigError when a
    key or secret it needs is missing). ``check(cfg, path)``: ConfigError(path, key,
    message) for a config this adapter cannot work with (its own keys), run by
    ``hub.config.load``. ``room_resource(site_id, room_id)``: the synthetic resource of a
    room configured without ``resources`` (the adapter puts it into that room's bookings);
    None: every room must map platform resources. ``wording``: see :class:`Wording`.
    """

    name: str
    # ``Any`` stands for hub.config.HubConfig: the config asks the adapters (through the
    # registry) to check it, so this module must not import the config back.
    build: Callable[[Any, MemberResolver, HttpPolicy], BookingAdapter]
    check: Callable[[Any, str], None]
    room_resource: Callable[[str, str], str] | None = None
    wording: Wording = Wording()


def unix(t: dt.datetime) -> int:
    """Whole Unix seconds of an aware datetime, rounded down (sub-second parts are dropped
    the same way everywhere, so versions compare consistently)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    return math.floor(t.timestamp())


def iso_z(t: int | float) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-11-23T08:00:00Z``."""
    return dt.datetime.fromtimestamp(math.floor(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_wire(b: Booking, source: str) -> PlatformBooking:
    """A validated PROTOCOL.md §5 Booking as a PlatformBooking."""
    return PlatformBooking(
        id=b.id,
        resource_id=b.resource_id,
        member_id=b.member_id,
        start=unix(b.start),
        end=unix(b.end),
        status=b.status,
        updated_at=b.updated_at.timestamp(),  # full precision: versions within a second differ
        pin=b.pin,
        source=source,
    )


def newest(bookings: dict[str, PlatformBooking], b: PlatformBooking) -> None:
    """Put ``b`` into ``bookings`` (by id) unless it does not supersede the version already
    there (``hub.store.supersedes``): on a tie the later one wins, as a platform lists
    changes in order, except that it never undoes a cancellation."""
    old = bookings.get(b.id)
    if old is None or supersedes(b.updated_at, b.status, old.updated_at, old.status):
        bookings[b.id] = b


def ordered(bookings: dict[str, PlatformBooking]) -> tuple[PlatformBooking, ...]:
    return tuple(sorted(bookings.values(), key=lambda b: (b.updated_at, b.id)))
