"""Threads meet at one queue (ARCHITECTURE.md), on both sides: a loop runs work items that
other threads ``post``. ``submit`` hands such a loop a function and gives back its result
as a future, for a thread (or an asyncio task) that needs the answer."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def submit(post: Callable[[Callable[[], object]], object], fn: Callable[[], T]) -> concurrent.futures.Future[T]:
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
