"""Failures that an outage of the store causes, logged as what they are.

While the PostgreSQL server restarts or fails over, every piece of work that touches the
store fails with ``StoreUnavailable`` (hub.store.postgres): on a busy hub hundreds a
second, each of which used to be logged with its traceback, as if it were a bug. Such a
failure is not a bug: ``log_failure`` logs it as one WARNING line with its cause, at
most once every ``NOTE_SECONDS`` per logger and message while the outage lasts (the rest
at DEBUG), and any other failure at ERROR with its traceback, as before. What failed is
done again by its own means (the sites resend unacknowledged events, the schedule comes
round again, the platform retries a webhook answered 503).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from .store import Store, open_store

#: While the store stays unavailable, one WARNING line per logger and message this often.
NOTE_SECONDS = 30.0

_last: dict[tuple[str, str], float] = {}
_lock = threading.Lock()


def store_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is the store being unreachable (``StoreUnavailable`` of the
    PostgreSQL store; a hub on SQLite never raises it), not a bug."""
    mod = sys.modules.get("hub.store.postgres.base")  # loaded with the PostgreSQL store, never imported here
    cls = getattr(mod, "StoreUnavailable", None) if mod is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


def log_failure(logger: logging.Logger, exc: BaseException, msg: str, *args: object) -> None:
    """Log that the work ``msg % args`` failed with ``exc`` (see the module's docstring)."""
    if not store_outage(exc):
        logger.error(msg, *args, exc_info=exc)
        return
    key = (logger.name, msg)
    now = time.monotonic()
    with _lock:
        last = _last.get(key)
        quiet = last is not None and now - last < NOTE_SECONDS
        if not quiet:
            _last[key] = now
    if quiet:
        logger.debug(msg + " (the store is unavailable: %s)", *args, exc)
    else:
        logger.warning(msg + " (the store is unavailable: %s; said once every %.0f s while it lasts)", *args, exc,
                       NOTE_SECONDS)


def store_rounds(url: str, stopping: threading.Event, round_: Callable[[Store], float], *args: object,
                 retry: float, logger: logging.Logger, msg: str) -> None:
    """A thread's loop over a store of its own: ``round_(store)`` until ``stopping`` is set,
    waiting the seconds each round returns. A failed round is logged (``log_failure``, ``msg
    % args``), its store closed and opened anew for the next round, ``retry`` seconds later."""
    store: Store | None = None
    try:
        while not stopping.is_set():
            try:
                if store is None:
                    store = open_store(url)
                wait = round_(store)
            except Exception as exc:
                log_failure(logger, exc, msg, *args)
                wait = retry
                if store is not None:
                    store.close()
                    store = None
            stopping.wait(wait)
    finally:
        if store is not None:
            store.close()
