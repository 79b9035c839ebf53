"""The running hub's booking sync reads the platform on a thread of its own
(``Hub.sync_in_background``): the loop goes on with other work while pages arrive, the
result is stored on the loop, and a broken page anywhere refuses the whole sync and
changes nothing, as the synchronous sync does (tests/hub/test_sync.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import hub.core.bookings as bookings_mod
from hub.core import Hub
from hub.store import Store, open_store
from hub.sync import SyncReport
from testkit.booking_fake import BookingPlatform
from tests.hub.test_sync import H, now, rest_config
from wire.handoff import WorkQueue

LOOP_SECONDS = 30.0


class Loop:
    """The hub's loop, run on the test's thread (the thread that owns the store)."""

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self.stopping = threading.Event()
        self.failures: list[Exception] = []

    def run_until(self, done: threading.Event) -> None:
        """Run posted work until ``done`` is set by it (AssertionError after LOOP_SECONDS)."""
        self.stopping.clear()
        timer = threading.Timer(LOOP_SECONDS, self.stopping.set)
        timer.start()

        def watch() -> None:
            if done.is_set():
                self.stopping.set()
            elif not self.stopping.is_set():
                threading.Timer(0.02, lambda: self.queue.post(watch)).start()

        self.queue.post(watch)
        try:
            self.queue.run(self.stopping, self.failures.append)
        finally:
            timer.cancel()
        assert done.is_set(), f"the loop gave up after {LOOP_SECONDS:.0f} s"
        assert self.failures == []


@pytest.fixture
def rig(tmp_path: Path, booking_platform: BookingPlatform) -> Iterator[tuple[Hub, Store, Loop]]:
    cfg = rest_config(tmp_path, booking_platform)
    store = open_store(cfg.hub.store_url)
    store.sync_sites(cfg.sites)
    loop = Loop()
    hub = Hub(cfg, store, post=loop.queue.post)
    try:
        yield hub, store, loop
    finally:
        hub.close()
        store.close()


def _sync(hub: Hub, loop: Loop) -> SyncReport:
    reports: list[SyncReport] = []
    done = threading.Event()

    def finished(report: SyncReport) -> None:
        reports.append(report)
        done.set()

    assert hub.sync_in_background(finished)
    loop.run_until(done)
    return reports[0]


def _bookings(platform: BookingPlatform, n: int) -> None:
    t = now()
    for i in range(n):
        platform.add(f"b{i}", "res-cowork", f"m{i % 7}", t + H, t + 2 * H)


def test_pages_read_on_a_thread_are_stored_on_the_loop(rig: tuple[Hub, Store, Loop],
                                                       booking_platform: BookingPlatform) -> None:
    hub, store, loop = rig
    _bookings(booking_platform, 120)  # three pages of 50
    report = _sync(hub, loop)
    assert report.ok and report.pages == 3 and report.complete and len(report.changed) == 120
    assert report.sites == {"minheim"}
    assert len(store.cache_bookings("minheim", 0, 2**40)) == 120
    assert store.cache_state("minheim") is not None  # the changed site's cache was built on the loop


def test_a_broken_page_on_the_thread_refuses_the_sync_and_changes_nothing(
    rig: tuple[Hub, Store, Loop], booking_platform: BookingPlatform
) -> None:
    hub, store, loop = rig
    _bookings(booking_platform, 40)
    assert _sync(hub, loop).ok
    before = store.bookings_for_site_window("minheim", 0, 2**40)
    cursor = store.get_sync_state("rest").cursor
    cache = store.cache_state("minheim")
    # The next listing: 150 bookings (3 pages); page 1 comes whole, page 2 is cut short.
    booking_platform.heal()
    _bookings(booking_platform, 150)
    booking_platform.cancel("b0")
    booking_platform.fail("slow", seconds=0)  # page 1, answered normally
    booking_platform.fail("truncated")  # page 2
    report = _sync(hub, loop)
    assert not report.ok and report.failures == 1 and report.changed == ()
    assert "page 2" in (report.error or "")
    assert store.bookings_for_site_window("minheim", 0, 2**40) == before
    state = store.get_sync_state("rest")
    assert (state.cursor, state.failures, state.last_error) == (cursor, 1, report.error)
    assert store.cache_state("minheim") == cache
    # Healed: the next sync reads every page and stores them.
    healed = _sync(hub, loop)
    assert healed.ok and len(store.cache_bookings("minheim", 0, 2**40)) == 149


def test_the_loop_goes_on_while_a_slow_platform_answers(rig: tuple[Hub, Store, Loop],
                                                       booking_platform: BookingPlatform) -> None:
    hub, store, loop = rig
    _bookings(booking_platform, 10)
    booking_platform.fail("slow", seconds=1.5)
    ran: list[bool] = []
    reports: list[SyncReport] = []
    done = threading.Event()
    assert hub.sync_in_background(lambda r: (reports.append(r), done.set()))
    assert not hub.sync_in_background()  # the schedule's next turn while it reads starts nothing
    for i in range(5):  # other work (a site's status, an ack) posted while the page is slow
        threading.Timer(0.1 + 0.1 * i, lambda: loop.queue.post(
            lambda: ran.append(hub.sync_reading and not reports))).start()
    loop.run_until(done)
    assert reports[0].ok and len(reports[0].changed) == 10
    assert ran == [True] * 5, ran  # each ran on the loop while the page was still on its way
    assert len(store.cache_bookings("minheim", 0, 2**40)) == 10


def test_what_a_node_read_after_losing_the_lease_is_dropped_unstored(
    rig: tuple[Hub, Store, Loop], booking_platform: BookingPlatform
) -> None:
    """Several nodes: the lease moved while this node read the platform; the new leader
    syncs itself, so what this one read is not stored (no writes of two leaders at once)."""
    hub, store, loop = rig
    _bookings(booking_platform, 30)
    reports: list[SyncReport | None] = []
    done = threading.Event()
    asked: list[bool] = []

    def still_leading() -> bool:
        asked.append(True)
        return False

    assert hub.sync_in_background(lambda r: (reports.append(r), done.set()), still_leading=still_leading)
    loop.run_until(done)
    assert reports == [None] and asked == [True]
    assert store.cache_bookings("minheim", 0, 2**40) == [] and store.get_sync_state("rest").cursor is None
    assert store.cache_state("minheim") is None
    # Leading again: the next sync stores everything.
    assert _sync(hub, loop).ok and len(store.cache_bookings("minheim", 0, 2**40)) == 30


def test_a_large_sync_gives_freed_memory_back_after_its_result_is_stored(
    rig: tuple[Hub, Store, Loop], booking_platform: BookingPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the sync's threads decoded is freed into their malloc arenas; after a large sync
    the loop asks malloc to give it back (hub.heap; scripts/bench_scale measures the RSS),
    once the result is stored, and not after a small one."""
    hub, store, loop = rig
    trims: list[int] = []
    monkeypatch.setattr(bookings_mod, "LARGE_SYNC", 20)
    monkeypatch.setattr(bookings_mod, "release_freed",
                        lambda: trims.append(len(store.cache_bookings("minheim", 0, 2**40))))
    _bookings(booking_platform, 10)
    assert _sync(hub, loop).ok
    done = threading.Event()
    loop.queue.post(done.set)  # after anything the sync's end posted
    loop.run_until(done)
    assert trims == []
    _bookings(booking_platform, 30)  # 30 bookings now: b0..b29
    assert _sync(hub, loop).ok
    done.clear()
    loop.queue.post(done.set)
    loop.run_until(done)
    assert trims == [30]  # once, with the whole result stored

