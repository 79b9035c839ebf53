"""Threads meet at one queue (ARCHITECTURE.md), on both sides: paho's thread, reader and
gpio threads, the HTTP server and APScheduler jobs ``post`` work; one loop thread runs it
and alone uses that side's SQLite connections. ``submit`` hands such a loop a function and
gives back its result as a future, for a thread (or an asyncio task) that needs the answer."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Work = Callable[[], object]


def submit(post: Callable[[Work], object], fn: Callable[[], T]) -> concurrent.futures.Future[T]:
    """Post ``fn`` through ``post`` and return the future of its result (or its exception).
    A future cancelled before the loop reaches it (a caller that gave up) is not run."""
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:  # the caller's to handle, on its own thread
            fut.set_exception(exc)

    post(work)
    return fut


class WorkQueue:
    """The queue and its loop: ``post`` from any thread, ``run`` on the one loop thread."""

    def __init__(self) -> None:
        self._q: queue.Queue[Work] = queue.Queue()
        #: ``time.monotonic()`` when the loop last came round (a watchdog's sign of life).
        self.beat = time.monotonic()

    def post(self, work: Work) -> None:
        """Run ``work`` on the loop (from any thread)."""
        self._q.put(work)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the loop and return its result (from another thread)."""
        return submit(self.post, fn).result(timeout)

    def run(self, stopping: threading.Event, failed: Callable[[Exception], None]) -> None:
        """Run work items one at a time until ``stopping`` is set (noticed within half a
        second). A work item that raises is handed to ``failed`` and the loop carries on."""
        while not stopping.is_set():
            self.beat = time.monotonic()
            try:
                work = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                work()
            except Exception as exc:  # one item's failure must not stop the loop
                failed(exc)

    def drain(self) -> None:
        """Run what is queued now, on the calling thread (the last moments of a stop);
        an item that raises propagates."""
        while True:
            try:
                work = self._q.get_nowait()
            except queue.Empty:
                return
            work()
