"""``torwart-hub keys``: rotating the hub's signing key (hub/keyring.py, PROTOCOL.md §3 ``keys``).

    torwart-hub keys status   the ring's keys and which site trusts which key
    torwart-hub keys rotate   make a new key and announce it to every site
    torwart-hub keys retire   drop the old key once no site needs it

``rotate`` records a new cache version per site naming the current and the new key,
signed by the current one; the running hub publishes them, and signs with the new key once
every site has acknowledged its version (``keys status`` shows who has not). ``retire``
refuses, naming the sites, while any site has not acknowledged a cache naming the new key
alone. Refusals exit 1 and change nothing.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

from .common import ago, load, open_cli_hub, table, when

log = logging.getLogger("hub")

Add = Callable[..., argparse.ArgumentParser]


def cmd_keys_status(args: argparse.Namespace) -> int:
    cfg = load(args)
    now = time.time()
    with open_cli_hub(args, cfg) as hub:
        status = hub.key_status()
        configured = hub.keyring.configured
    if not status.keys:
        print(f"one signing key ({configured}), never rotated; caches name no keys")
    else:
        table(["KEY", "STATE", "MADE", "SINCE"],
              [[k.kid, k.state, when(k.created_at), ago(k.changed_at, now)] for k in status.keys])
    print()
    table(["SITE", "TRUSTS", "ANNOUNCED", "FROM VERSION", "SITE HOLDS", "ACKNOWLEDGED"],
          [[s.site, " ".join(s.trusts) or "?", " ".join(s.announced) or None, s.since, s.holds,
            "no (revoked: holds nothing back)" if s.blocked else "yes" if s.acked
            else "NO" if s.reports_keys else "NO (software too old or never seen)"]
           for s in status.sites])
    phase = status.phase
    if phase.next is not None:
        waiting = status.waiting
        print(f"\nrotation: key {phase.next.kid} announced beside {phase.signing.kid if phase.signing else '?'}; "
              + (f"waiting for {len(waiting)} site(s): {', '.join(waiting)}" if waiting
                 else "every site has it: the running hub switches to it within seconds"))
    elif phase.previous is not None:
        waiting = status.waiting
        print(f"\nkey {phase.signing.kid if phase.signing else '?'} signs; previous key {phase.previous.kid} "
              + (f"still needed by: {', '.join(waiting)}" if waiting
                 else "is no longer needed: torwart-hub keys retire"))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    cfg = load(args, check_files=True)
    with open_cli_hub(args, cfg) as hub:
        row, versions = hub.rotate_key()
    print(f"new signing key {row.kid} (seed in {hub.keyring.key_file(row.kid)}, owner-readable only)")
    for site, version in versions.items():
        print(f"  site {site}: announced in cache version {version}")
    print("the running hub publishes these versions and signs with the new key once every site has "
          "acknowledged its version (torwart-hub keys status); then retire the old key (torwart-hub keys retire)")
    print("back up the hub now: the new key is part of what a restore needs (torwart-hub backup)")
    return 0


def cmd_keys_retire(args: argparse.Namespace) -> int:
    cfg = load(args, check_files=True)
    with open_cli_hub(args, cfg) as hub:
        row = hub.retire_key()
    print(f"signing key {row.kid} retired: no site trusts it, its seed is deleted; a cache signed by it is refused")
    return 0


def add_key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    """Register ``keys status|rotate|retire`` (``add`` is main.build_parser's helper)."""
    keys = sub.add_parser("keys", help="the hub's signing keys: rotate, retire, status").add_subparsers(
        dest="keys_command", required=True)
    add(keys, "status", cmd_keys_status, "show the signing keys and which site trusts which key")
    add(keys, "rotate", cmd_keys_rotate, "make a new signing key and announce it to every site; the running hub "
        "signs with it once every site has acknowledged it")
    add(keys, "retire", cmd_keys_retire, "drop the previous signing key once no site needs it")
