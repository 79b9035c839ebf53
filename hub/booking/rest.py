"""The reference adapter: the REST contract of PROTOCOL.md §5.

``fetch(since)`` lists ``GET {base}/api/v1/bookings?updated_since=...`` page by page until
``next_page_token`` is null. Incremental syncs ask from ``since - overlap`` (120 s by
default): a platform may commit a change with an ``updated_at`` a little older than
changes we have already seen (clock skew between its servers, long transactions, offset
paging shifting under edits), and the overlap picks those up. The overlap re-delivers
recent bookings, so the caller must apply them idempotently (upsert by id; a booking
update never replaces one with a later ``updated_at``, compared at full precision), which
is how the hub's store treats every booking anyway.

Validation is strict and per item: a page that is not a PROTOCOL.md page (not JSON, cut
short, ``items`` not a list, a token that is not a string) fails the whole sync with
SyncError, while one malformed booking is logged with its id, reported in
``SyncResult.skipped`` and left out, so that one bad record cannot stop every door.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import queue
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import requests
from requests.auth import AuthBase

from hub.config import HubConfig, read_secret
from hub.errors import ConfigError, HubError, SyncError
from wire.errors import WireError
from wire.messages import Booking, BookingPage, decode

from .base import (
    AdapterType,
    MemberResolver,
    PlatformBooking,
    Skipped,
    SyncResult,
    Wording,
    WriteFailed,
    from_wire,
    iso_z,
    newest,
    ordered,
)
from .transport import RETRY_STATUSES, HttpPolicy, Reply, make_session, request

log = logging.getLogger(__name__)

LIST_PATH = "/api/v1/bookings"
_TOKEN = re.compile(r"[\x21-\x7e]+")


class _Bearer(AuthBase):
    """``Authorization: Bearer TOKEN`` on every request. Passing it as ``auth`` (not as a
    header) also stops requests from replacing it with credentials from ``~/.netrc``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_Bearer(<redacted>)"


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), or
    None when there is none or it cannot be read."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _item_id(raw: bytes) -> str | None:
    """The id of an item that failed validation, if it has a usable one (for the log)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and value:
            return value[:80]
    return None


class _ValidPage(msgspec.Struct, frozen=True):
    """A page whose every item is a valid Booking (``_all_valid``)."""

    items: list[Booking]


_valid_page = msgspec.json.Decoder(_ValidPage)


def _all_valid(body: bytes) -> list[Booking] | None:
    """Every item of a page (already decoded as a BookingPage, so JSON and UTF-8) as
    Bookings in one pass, or None when any item is not one (then each is decoded on its
    own, to skip only the bad ones): the same Bookings, a fraction of the work."""
    try:
        return _valid_page.decode(body).items
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None


T = TypeVar("T")


def _read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced on a thread of their own up to ``depth`` ahead of the caller; an
    exception of ``items`` is raised to the caller in its place. When the caller stops
    early, the thread stops at its next item."""
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(done: bool, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((done, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(False, item):
                    return
            put(True, None)
        except BaseException as exc:  # the caller's to raise, in order
            put(True, exc)

    thread = threading.Thread(target=produce, name="booking-pages", daemon=True)
    thread.start()
    try:
        while True:
            done, item = q.get()
            if done:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


#: ``page 1: HTTP 200``, ``12 bookings in 3 pages``.
WORDING = Wording()


class RestAdapter:
    """PROTOCOL.md §5 over HTTP(S).

    ``token`` is the API token itself (the caller reads it from its file); it is sent
    only in the Authorization header and never logged or shown in ``repr``. ``clock``
    (Unix seconds) is only used to keep the cursor from running ahead of the hub's own
    time when a platform reports ``updated_at`` values in the future.
    """

    supports_write = True
    wording = WORDING
    #: Members come with the bookings: the hub's resolver is never asked (hub.sync).
    resolves_members = False

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        policy: HttpPolicy | None = None,
        overlap: int = 120,
        max_pages: int = 1000,
        source: str = "rest",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise HubError(f"booking platform URL must start with http:// or https://, not {base_url[:40]!r}")
        if not _TOKEN.fullmatch(token):
            # Not echoed: even a malformed token may be most of a real one.
            raise HubError("booking platform token is empty or contains spaces or control characters")
        if overlap < 0 or max_pages < 1:
            raise ValueError("overlap must be >= 0 and max_pages >= 1")
        self._base = base_url.rstrip("/")
        self._auth = _Bearer(token)
        self.policy = policy or HttpPolicy()
        self.overlap = overlap
        self.max_pages = max_pages
        self.source = source
        self._clock = clock
        self._session = make_session(self.policy)

    def __repr__(self) -> str:
        return f"RestAdapter({self._base!r}, token=<redacted>, source={self.source!r})"

    # --- reading ------------------------------------------------------------------------

    def fetch(self, since: int | None) -> SyncResult:
        """All bookings changed at or after ``since - overlap`` (every booking when ``since``
        is None, and then ``complete`` is True), deduplicated by id keeping the newest.

        The returned cursor is the newest ``updated_at`` seen (never less than ``since``,
        never more than the hub's clock); with nothing new it is ``since`` unchanged.
        Raises SyncError for transport failures, refused tokens, broken pages, a page loop
        or more than ``max_pages`` pages.
        """
        params: dict[str, str] = {}
        if since is not None:
            params["updated_since"] = iso_z(max(0, since - self.overlap))
        found: dict[str, PlatformBooking] = {}
        skipped: list[Skipped] = []
        pages = 0
        # The next page is requested while this one's bookings are read (the platform builds
        # it meanwhile); errors still come in page order.
        for body, page in _read_ahead(self._pages(params)):
            pages += 1
            bookings = _all_valid(body)
            if bookings is not None:
                for booking in bookings:
                    newest(found, from_wire(booking, self.source))
            else:  # one by one: the bad ones are skipped and named
                for raw in page.items:
                    self._take(bytes(raw), found, skipped)
        cursor = self._cursor(since, found)
        log.info("%s: %d bookings in %d pages, %d skipped, cursor %s", self.source, len(found), pages,
                 len(skipped), cursor)
        return SyncResult(ordered(found), cursor, pages, tuple(skipped), complete=since is None)

    def _pages(self, params: dict[str, str]) -> Iterator[tuple[bytes, BookingPage]]:
        """The listing's pages in order, each a PROTOCOL.md page (its items still raw), until
        ``next_page_token`` is null; SyncError for a failed request, a broken page, a page
        loop or more than ``max_pages`` pages."""
        tokens_seen: set[str] = set()
        token: str | None = None
        pages = 0
        while True:
            if pages >= self.max_pages:
                raise SyncError(f"{self.source}: more than {self.max_pages} pages in one sync; giving up")
            query = dict(params, page_token=token) if token is not None else params
            what = f"{self.source}: bookings page {pages + 1}"
            reply = self._send("GET", self._base + LIST_PATH, what, params=query)
            self._expect(reply, what, 200)
            pages += 1
            try:
                page: BookingPage = decode(reply.body, BookingPage)
            except WireError as exc:
                raise SyncError(f"{what} is not a bookings page ({exc})") from None
            yield reply.body, page
            token = page.next_page_token
            if not token:
                return  # null ends the listing; "" cannot continue it either
            if token in tokens_seen:
                raise SyncError(f"{what}: next_page_token repeats an earlier one (page loop); giving up")
            tokens_seen.add(token)

    def _take(self, raw: bytes, found: dict[str, PlatformBooking], skipped: list[Skipped]) -> None:
        try:
            booking: Booking = decode(raw, Booking)
        except WireError as exc:
            item = _item_id(raw)
            log.warning("%s: skipped booking %r: %s", self.source, item if item is not None else "(no id)", exc)
            skipped.append(Skipped(item, str(exc)))
            return
        newest(found, from_wire(booking, self.source))

    def _cursor(self, since: int | None, found: dict[str, PlatformBooking]) -> int | None:
        top = max((b.updated_at for b in found.values()), default=None)
        high = None if top is None else math.floor(top)  # "at or after": that second is read again
        cursor = since if high is None else high if since is None else max(since, high)
        now = int(self._clock())
        if cursor is not None and cursor > now:
            # A cursor in the future would hide every change until then; re-reading a little
            # more next time costs nothing.
            log.warning("%s: platform reports changes %d s in the future; cursor kept at now",
                        self.source, cursor - now)
            cursor = now
        return cursor

    # --- writing ------------------------------------------------------------------------

    def check_in(self, booking_id: str, at: int) -> None:
        """POST ``{"at": ISO8601}`` to the booking's check-in; WriteFailed unless 2xx."""
        self._post(booking_id, "check-in", {"at": iso_z(at)})

    def release(self, booking_id: str, reason: str = "no_show") -> None:
        """POST ``{"reason": reason}`` to the booking's release; WriteFailed unless 2xx."""
        self._post(booking_id, "release", {"reason": reason})

    def _post(self, booking_id: str, action: str, doc: dict[str, str]) -> None:
        if not booking_id:
            raise ValueError("empty booking id")
        url = f"{self._base}{LIST_PATH}/{urllib.parse.quote(booking_id, safe='')}/{action}"
        what = f"{self.source}: {action} of booking {booking_id!r}"
        try:
            reply = self._send("POST", url, what, json=doc)
        except SyncError as exc:  # no answer, or a broken one: may work later
            raise WriteFailed(str(exc)) from None
        status = reply.status
        if 200 <= status < 300:
            log.info("%s done", what)
            return
        wait = retry_after(reply.headers, self._clock()) if status in (429, 503) else None
        if status == 404:
            raise WriteFailed(f"{what}: the platform does not know this booking (HTTP 404)", status=404,
                              permanent=True)
        permanent = 400 <= status < 500 and status not in (401, 403, 408, 429)
        raise WriteFailed(self._refusal(reply, what), status=status, permanent=permanent, retry_after=wait)

    # --- plumbing -----------------------------------------------------------------------

    def _send(self, method: str, url: str, what: str, *, params: dict[str, str] | None = None,
              json: object = None) -> Reply:
        return request(self._session, self.policy, method, url, what=what, params=params, json=json,
                       auth=self._auth)

    @classmethod
    def _expect(cls, reply: Reply, what: str, *ok: int) -> None:
        if reply.status not in ok:
            raise SyncError(cls._refusal(reply, what))

    @staticmethod
    def _refusal(reply: Reply, what: str) -> str:
        """Why ``reply`` is not what was wanted (no URL, no token)."""
        if reply.status in (401, 403):
            return f"{what}: the platform refused the API token (HTTP {reply.status}); check the token file"
        retried = " after retries" if reply.status in RETRY_STATUSES else ""
        return f"{what}: HTTP {reply.status}{retried}"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RestAdapter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()



def check(cfg: HubConfig, path: str) -> None:
    """``adapter = "rest"`` needs ``base_url`` and ``token_file`` (ConfigError otherwise)."""
    b = cfg.booking
    if b.base_url is None:
        raise ConfigError(path, "booking.base_url", 'adapter = "rest" needs the platform\'s base URL')
    if b.token_file is None:
        raise ConfigError(path, "booking.token_file", 'adapter = "rest" needs the file holding the API token')


def build(cfg: HubConfig, resolve_member: MemberResolver, policy: HttpPolicy) -> RestAdapter:
    """The REST adapter of ``cfg.booking``, its token read from its owner-only file now
    (ConfigError if it is missing, readable by others or empty). Members come with the
    bookings, so ``resolve_member`` is not needed."""
    b = cfg.booking
    if b.base_url is None or b.token_file is None:
        raise ConfigError("(hub config)", "booking.base_url", 'adapter = "rest" needs base_url and token_file')
    return RestAdapter(b.base_url, read_secret(b.token_file), policy=policy, overlap=b.overlap_seconds,
                       source="rest")


ADAPTER = AdapterType(name="rest", build=build, check=check, wording=WORDING)
