"""What the entry points of both sides (and the simulated site) do alike: logging
configured once, one line per record on stderr, which journald keeps as one entry
(ARCHITECTURE.md); and a clean stop on SIGTERM (systemd) or SIGINT (Ctrl-C)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

_ready = False


def setup_logging(level: str) -> None:
    """One line per record on stderr; journald adds its own time stamps, a terminal gets ours.

    ``level`` is a level name ("debug", "info", ...; an unknown one means info). Configured
    once per process; a process that has configured logging already (a test runner, a
    program embedding a CLI) keeps its own handlers and levels."""
    global _ready  # noqa: PLW0603 (the entry point configures logging once)
    if _ready or logging.getLogger().handlers:
        return
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty() or not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt, stream=sys.stderr)
    # APScheduler reports every job run at INFO; only its problems matter here.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    _ready = True


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` (which must only ask a loop to end, and return) on SIGTERM or SIGINT.
    From the main thread, as ``signal.signal`` requires."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
