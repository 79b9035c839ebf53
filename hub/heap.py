"""Giving freed heap memory back to the system after a large piece of work.

A booking sync of a million bookings decodes them on its own threads; glibc's malloc keeps
what such a thread freed in that thread's arena, so the hub's RSS stays hundreds of MiB
above what it uses until the arenas are reused. ``release_freed`` asks glibc to return the
free pages of every arena (``malloc_trim(0)``, which walks all arenas since glibc 2.8). Where
there is no glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: A sync of at least this many bookings is followed by ``release_freed``.
LARGE_SYNC = 10_000


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:  # the symbols already loaded into this process (no ldconfig subprocess)
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = (ctypes.c_size_t,)
    fn.restype = ctypes.c_int
    return fn


def release_freed() -> bool:
    """Return free heap pages of every malloc arena to the system; whether any was (False
    too where malloc cannot be asked). Logs how long it took: the caller's thread waits."""
    trim = _malloc_trim()
    if trim is None:
        return False
    t0 = time.monotonic()
    released = bool(trim(0))
    log.info("gave freed memory back to the system in %.0f ms", (time.monotonic() - t0) * 1000)
    return released
