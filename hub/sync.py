"""One booking sync: platform adapter → the hub's store, with the cursor and health kept.

``BookingSync.run_once`` reads the cursor of its source from the store, asks the adapter
for what changed since, and stores the result: an incremental result is upserted, a
complete one (the first REST sync, every ICS sync) replaces the source's bookings within
its window, so that a booking that vanished from the platform is cancelled. A failing
platform (``SyncError``) is recorded (consecutive failures, last error) and reported, and
the store's bookings stay exactly as they were: a platform outage never empties a cache.

The caller (the hub's scheduler, ``torwart-hub sync``) rebuilds the caches of the sites in
``SyncReport.sites``. The adapter is the only part that talks HTTP; this module only
moves its results into the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

from .booking import BookingAdapter, HttpPolicy, PlatformBooking, Skipped, SyncResult
from .booking.base import Wording
from .booking.registry import adapter_type
from .config import HubConfig
from .errors import SyncError
from .store import BookingChanges, Store

log = logging.getLogger(__name__)

#: Receives one human-readable line per step (a page read, the result stored).
Progress = Callable[[str], None]


class SyncStart(NamedTuple):
    """A sync begun (``BookingSync.begin``): when (Unix seconds), the cursor it reads
    from, and ``time.monotonic()`` at its start."""

    at: int
    since: int | None
    t0: float


@dataclass(frozen=True, slots=True)
class SyncReport:
    """The outcome of one sync (or one webhook booking).

    ``seen`` counts the bookings the platform returned, ``changed`` the ids whose stored
    booking changed (new, moved, cancelled, vanished), ``sites`` the sites whose caches
    those changes touch. On failure ``ok`` is False, ``error`` says why (no URLs, no
    secrets) and ``failures`` counts the failures in a row; nothing was stored.
    """

    source: str
    ok: bool
    seen: int = 0
    changed: tuple[str, ...] = ()
    sites: frozenset[str] = frozenset()
    pages: int = 0
    skipped: tuple[Skipped, ...] = ()
    complete: bool = False
    error: str | None = None
    failures: int = 0
    seconds: float = 0.0
    cursor: int | None = None


def build_adapter(
    cfg: HubConfig, resolve_member: Callable[[str], str | None], *, policy: HttpPolicy | None = None
) -> BookingAdapter:
    """The adapter ``cfg.booking`` describes, built by its module (``booking.registry``).
    Secrets it needs (the REST token) are read from their owner-only files here
    (ConfigError if one is missing, readable by others or empty; also for an adapter name
    the registry does not know)."""
    b = cfg.booking
    policy = policy or HttpPolicy(read_timeout=b.timeout_seconds)
    return adapter_type(b.adapter).build(cfg, resolve_member, policy)


def _parse_cursor(source: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        log.warning("booking sync %s: stored cursor is not a number; doing a full sync", source)
        return None


def _watch_pages(adapter: BookingAdapter, progress: Progress, noun: str) -> Callable[[], None]:
    """Report every HTTP document the adapter reads, as it arrives; return the undo.

    The adapters have no page callback, so this hangs a response hook on their requests
    Session (after urllib3's retries: one call per document). Adapters without one (a
    test double, a future platform) simply report no pages until the result is in."""
    session = getattr(adapter, "_session", None)
    hooks = getattr(session, "hooks", None)
    if not isinstance(hooks, dict) or not isinstance(hooks.get("response"), list):
        return lambda: None
    count = 0

    def hook(resp: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        # The body is not read yet (the transport streams it, within its size limit).
        size = resp.headers.get("Content-Length")
        progress(f"{noun} {count}: HTTP {resp.status_code}" + (f", {size} bytes" if size else ""))

    responses: list[Any] = hooks["response"]
    responses.append(hook)

    def undo() -> None:
        if hook in responses:
            responses.remove(hook)

    return undo


class BookingSync:
    """Syncs bookings from the configured platform into ``store`` (one thread owns it).

    ``adapter`` defaults to the one ``cfg.booking`` describes (see ``build_adapter``; the
    ICS adapter resolves attendees' e-mail addresses to members of the store). An adapter
    built here is closed by ``close()``; one passed in belongs to the caller.
    """

    def __init__(self, cfg: HubConfig, store: Store, adapter: BookingAdapter | None = None, *,
                 policy: HttpPolicy | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self._emails: dict[str, str] | None = None
        self._owns = adapter is None
        self.adapter = adapter if adapter is not None else build_adapter(cfg, self._member_by_email, policy=policy)
        self.source: str = getattr(self.adapter, "source", cfg.booking.adapter)
        #: How progress lines speak of what the adapter reads (an adapter without
        #: ``wording``, e.g. a test double, gets the defaults: pages).
        self.wording: Wording = getattr(self.adapter, "wording", Wording())

    def _member_by_email(self, email: str) -> str | None:
        if self._emails is None:  # read once per sync, and only by an adapter that asks (ICS)
            self._emails = self._read_emails()
        return self._emails.get(email.lower())

    def _read_emails(self) -> dict[str, str]:
        return {m.email.lower(): m.id for m in self.store.members() if m.email}

    def _refresh_members(self) -> None:
        """Forget the e-mail map: the next lookup reads the members as they are now. A
        platform that never resolves addresses (REST) costs no read of every member."""
        self._emails = None

    def run_once(self, now: float | None = None, progress: Progress | None = None) -> SyncReport:
        """Sync once; never raises SyncError (it is recorded and returned as ``ok=False``)."""
        start = self.begin(now, progress)
        return self.finish(start, self.fetch(start, progress))

    def begin(self, now: float | None = None, progress: Progress | None = None, *,
              elsewhere: bool = False) -> SyncStart:
        """The first step of a sync, on the thread that owns the store: the cursor to read
        from. ``elsewhere``: ``fetch`` will run on another thread, so what the adapter may
        ask of the store during it (the members' e-mail addresses, unless the adapter says
        it never resolves any: ``resolves_members = False``) is read now."""
        at = int(time.time() if now is None else now)
        since = _parse_cursor(self.source, self.store.get_sync_state(self.source).cursor)
        (progress or (lambda _line: None))(self.wording.reading(self.source, since))
        self._refresh_members()
        if elsewhere and getattr(self.adapter, "resolves_members", True):
            self._emails = self._read_emails()  # read here: the store is this thread's
        return SyncStart(at, since, time.monotonic())

    def fetch(self, start: SyncStart, progress: Progress | None = None) -> SyncResult | SyncError:
        """Read from the platform what changed since ``start``: the adapter's result, or
        the SyncError it failed with. Touches no store (it may run on any thread, one
        fetch at a time)."""
        undo = _watch_pages(self.adapter, progress or (lambda _line: None), self.wording.document)
        try:
            return self.adapter.fetch(start.since)
        except SyncError as exc:
            return exc
        finally:
            undo()

    def finish(self, start: SyncStart, fetched: SyncResult | SyncError) -> SyncReport:
        """Store what ``fetch`` read (or record its failure: nothing else changes), on the
        thread that owns the store; the report."""
        at, since, t0 = start
        if isinstance(fetched, SyncError):
            state = self.store.record_sync_error(self.source, str(fetched), at)
            seconds = time.monotonic() - t0
            log.warning("booking sync %s failed (%d in a row, %.1f s): %s", self.source, state.failures,
                        seconds, fetched)
            return SyncReport(source=self.source, ok=False, error=str(fetched), failures=state.failures,
                              seconds=seconds, cursor=since)
        result = fetched
        changes = self._store(result)
        cursor = result.cursor if result.cursor is not None else since
        self.store.record_sync_ok(self.source, None if cursor is None else str(cursor), at)
        seconds = time.monotonic() - t0
        log.info("booking sync %s: %d bookings in %d pages, %d changed, %d sites, %d skipped, %.1f s",
                 self.source, len(result.bookings), result.pages, len(changes.changed), len(changes.sites),
                 len(result.skipped), seconds)
        log.debug("booking sync %s: sites changed: %s", self.source, ",".join(sorted(changes.sites)) or "-")
        return SyncReport(source=self.source, ok=True, seen=len(result.bookings), changed=tuple(changes.changed),
                          sites=changes.sites, pages=result.pages, skipped=result.skipped,
                          complete=result.complete, seconds=seconds, cursor=cursor)

    def _store(self, result: SyncResult) -> BookingChanges:
        if not result.complete:
            return self.store.upsert_bookings(result.bookings)
        # Skipped ids were present but unreadable this time: keep what we had for them.
        keep = [s.id for s in result.skipped if s.id is not None]
        return self.store.replace_bookings(self.source, result.bookings, window=result.window, keep=keep)

    def apply_webhook(self, booking: PlatformBooking, now: float | None = None) -> SyncReport:
        """Store one booking the platform pushed (its signature, timestamp and freshness
        already verified). A version that does not supersede the stored one (an earlier
        ``updated_at``, or an equal one undoing a cancellation) is ignored by the store."""
        t0 = time.monotonic()
        changes = self.store.upsert_bookings([booking])
        seconds = time.monotonic() - t0
        log.info("webhook booking %s: %s, sites %s", booking.id, "changed" if changes else "unchanged",
                 ",".join(sorted(changes.sites)) or "-")
        return SyncReport(source=booking.source, ok=True, seen=1, changed=tuple(changes.changed),
                          sites=changes.sites, seconds=seconds)

    def close(self) -> None:
        """Close the adapter if this object built it."""
        if self._owns:
            self.adapter.close()

    def __enter__(self) -> BookingSync:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
