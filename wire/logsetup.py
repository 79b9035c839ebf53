"""Logging for both sides' entry points: one line per record on stderr, which journald
keeps as one entry (ARCHITECTURE.md: configured once, in the entry point)."""

from __future__ import annotations

import logging
import os
import sys

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
