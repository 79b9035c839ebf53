"""Helpers shared by the ``torwart-hub`` commands: config and store opening, tables, times."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from wire.errors import KeyFileError

from . import config as config_mod
from .config import HubConfig
from .errors import HubError
from .store import Store, open_store

log = logging.getLogger("hub")

_logging_ready = False


def setup_logging(level: str) -> None:
    """One line per record on stderr; journald adds its own time stamps, a terminal gets ours.

    Configured once per process; a process that has configured logging already (a test
    runner, a program embedding the CLI) keeps its own handlers and levels."""
    global _logging_ready  # noqa: PLW0603 (the entry point configures logging once)
    if _logging_ready or logging.getLogger().handlers:
        return
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty() or not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    _logging_ready = True


# --- shared helpers ---------------------------------------------------------------------------


def _load(args: argparse.Namespace, *, check_files: bool = False) -> HubConfig:
    return config_mod.load(args.config, check_files=check_files)


@contextmanager
def _store(cfg: HubConfig) -> Iterator[Store]:
    """The hub's store, created (with its directory) on first use; sites synced from cfg."""
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(cfg.hub.store_path)
    try:
        store.sync_sites(cfg.sites)
        yield store
    finally:
        store.close()


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M")


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = now - t
    sign, s = ("in ", -s) if s < 0 else ("", s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{sign}{int(s // size)}{unit}" + ("" if sign else " ago")
    return f"{sign}{int(s)}s" + ("" if sign else " ago")


def _iso_time(text: str) -> int:
    """argparse type: ISO 8601 (date or date-time; local time without an offset)."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T08:00)") from None
    return int((t if t.tzinfo is not None else t.astimezone()).timestamp())


def _rebuild(cfg: HubConfig, store: Store, sites: set[str] | frozenset[str], now: int) -> None:
    """Rebuild the caches of ``sites``; the running hub publishes new versions."""
    from .caches import CacheManager

    configured = [s.id for s in cfg.sites if s.id in sites]
    if not configured:
        return
    try:
        key = config_mod.signing_key(cfg)
    except KeyFileError as exc:
        raise HubError(f"signing key: {exc.args[0]} (run `torwart-hub init`)") from None
    caches = CacheManager(store, cfg, key)
    for site in configured:
        version = caches.rebuild(site, now)
        print(f"site {site}: " + (f"new cache version {version} (the running hub publishes it)"
                                  if version is not None else "cache unchanged"))


# --- credentials ------------------------------------------------------------------------------
