"""Helpers shared by the ``torwart-hub`` commands: logging, the config and the core, tables, times."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager

from wire.entrypoint import setup_logging as setup_logging  # noqa: PLC0414  (the CLI imports it here)

from .. import config as config_mod
from ..config import HubConfig
from ..core import Hub, open_hub

log = logging.getLogger("hub")

# --- shared helpers ---------------------------------------------------------------------------


def load(args: argparse.Namespace, *, check_files: bool = False) -> HubConfig:
    """The config named by ``--config`` (ConfigError: exit status 2)."""
    return config_mod.load(args.config, check_files=check_files)


def open_cli_hub(args: argparse.Namespace, cfg: HubConfig) -> AbstractContextManager[Hub]:
    """The application core on the hub's store (created with its directory on first use;
    the configured sites synced into it); messages name ``--config``."""
    return open_hub(cfg, where=args.config)


def prepare_store(args: argparse.Namespace, cfg: HubConfig) -> None:
    """Create or migrate the hub's store and sync the configured sites into it, then close
    it (``init``, ``site add`` and ``run`` before the service opens its own)."""
    with open_cli_hub(args, cfg):
        return


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


def when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M")


def ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = now - t
    sign, s = ("in ", -s) if s < 0 else ("", s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{sign}{int(s // size)}{unit}" + ("" if sign else " ago")
    return f"{sign}{int(s)}s" + ("" if sign else " ago")


def iso_time(text: str) -> int:
    """argparse type: ISO 8601 (date or date-time; local time without an offset)."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T08:00)") from None
    return int((t if t.tzinfo is not None else t.astimezone()).timestamp())


def rebuild(hub: Hub, sites: Iterable[str], now: int | None = None) -> None:
    """Rebuild the caches of ``sites``, a line each; the running hub publishes new versions."""
    for site, version in hub.rebuild(sites, now):
        print(f"site {site}: " + (f"new cache version {version} (the running hub publishes it)"
                                  if version is not None else "cache unchanged"))


def print_site_added(broker_host: str) -> None:
    """The last lines of ``site add`` (with a bundle or by join code): restart the hub, and a
    warning when the site was told a loopback broker address no Pi can reach."""
    print("restart the hub to serve the new site (systemctl restart torwart-hub)")
    if broker_host in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the site will connect to {broker_host}; a Pi needs the broker's public name "
              "(--broker-host)", file=sys.stderr)
