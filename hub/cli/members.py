"""``torwart-hub members``: a member's data, for access and erasure requests (GDPR Art. 15, 17).

    torwart-hub members export MEMBER [--out FILE]
    torwart-hub members remove MEMBER [--timeout SECONDS]

``export`` writes everything the hub holds about the member as JSON (stdout, or FILE
written owner-readable only, 0600); no raw credential, key or hash is in it. ``remove``
deletes the member's name, e-mail, credentials, PINs, grants, enrollments and the hub's
copies of their bookings at once, publishes the new caches of the sites that held them
and waits until each site acknowledged; it exits 1 when a site did not (the site gets the
version when it reconnects). An unknown member exits 1 and changes or writes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import HubError
from .common import load, open_cli_hub

log = logging.getLogger("hub")

Add = Callable[..., argparse.ArgumentParser]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), whole or not at all
    (a temporary file beside it, renamed); HubError when it cannot."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise HubError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp made it 0600
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise HubError(f"{path}: cannot write: {exc.strerror or exc}") from None


def cmd_members_export(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        doc = hub.export_member(args.member)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if args.out is None:
        print(text, end="")
    else:
        write_private(Path(args.out), text)
        print(f"member {args.member}: written to {args.out} (owner-readable only)")
    return 0


def cmd_members_remove(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        done = hub.erase_and_wait(args.member, timeout=args.timeout)
    gone = ", ".join(f"{n} {table}" for table, n in done.deleted.items() if n and table != "members")
    print(f"member {done.member} erased: name, e-mail" + (f", {gone}" if gone else ""))
    if not done.acks:
        print("no site's cache held the member")
    missing = 0
    for ack in done.acks:
        if ack.acked:
            print(f"site {ack.site}: acknowledged cache version {ack.version} (the member is gone from it)")
        elif ack.error:
            missing += 1
            print(f"site {ack.site}: NOT acknowledged cache version {ack.version}: {ack.error}")
        else:
            missing += 1
            print(f"site {ack.site}: NOT acknowledged within {args.timeout:.0f} s (offline?); cache version "
                  f"{ack.version} waits for it as the retained cache and replaces the old one when it connects")
    print(f"events naming the member's pseudonym stay until retention ({cfg.hub.retention_days} days) "
          "purges them; erase the member at the booking platform too, or its next sync brings bookings back")
    return 1 if missing else 0


def add_member_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    """Register ``members export|remove`` (``add`` is the parser helper of ``build_parser``)."""
    members = sub.add_parser("members", help="a member's data: export (access request), remove (erasure)"
                             ).add_subparsers(dest="members_command", required=True)
    p = add(members, "export", cmd_members_export, "write everything the hub holds about a member as JSON "
            "(credentials by type and fingerprint only)")
    p.add_argument("member", help="the member's id on the booking platform")
    p.add_argument("--out", metavar="FILE", help="write to FILE, owner-readable only (default: stdout)")
    p = add(members, "remove", cmd_members_remove, "erase a member: name, e-mail, credentials, PINs at once; "
            "their entries leave every site's cache (waits for the sites' acknowledgements)")
    p.add_argument("member", help="the member's id on the booking platform")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the sites' acknowledgements (default: 30)")
