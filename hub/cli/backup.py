"""``torwart-hub backup`` and ``restore`` (hub/backup.py has what goes in and how it comes back).

    torwart-hub backup FILE --config hub.toml            while the hub runs; FILE is 0600
    torwart-hub restore FILE --config hub.toml [--force] with the hub stopped

Progress goes to stdout line by line. A refusal (not a backup, a damaged one, the hub
running, files that differ without --force) exits 1 and changes nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from ..backup import backup, restore
from .common import load, when

Add = Callable[..., argparse.ArgumentParser]


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def cmd_backup(args: argparse.Namespace) -> int:
    cfg = load(args)
    t0 = time.monotonic()
    print(f"backing up the hub of {args.config} to {args.file}", flush=True)
    manifest = backup(cfg, Path(args.config), Path(args.file), _say)
    print(f"backup written: {args.file} (owner-readable only: it holds the hub's keys and secrets), the store and "
          f"{len(manifest.files)} files in {time.monotonic() - t0:.1f} s")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    print(f"verifying {args.file}", flush=True)
    manifest = restore(Path(args.file), Path(args.config), force=args.force, say=_say)
    print(f"restored the hub as of {when(manifest.created_at)} (made by {manifest.software or 'an unknown version'}): "
          f"the store and {len(manifest.files)} files")
    print("start the hub (systemctl start torwart-hub); sites holding newer cache versions get versions above "
          "theirs, and events they still hold are sent again")
    return 0


def add_backup_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    p = add(sub, "backup", cmd_backup, "write a consistent copy of the hub (store, keys, CA, broker files, "
            "config) to FILE, while it runs; FILE is created owner-readable only")
    p.add_argument("file", metavar="FILE")
    p = add(sub, "restore", cmd_restore, "restore the hub from a backup FILE (the hub must be stopped); "
            "verifies it first")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace files whose content differs from the backup's")
