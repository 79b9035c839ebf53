"""``torwart-hub cards enroll``: enroll a card by reading it, at the admin's desk or at a site.

    torwart-hub cards enroll MEMBER --reader rdm6300:/dev/ttyUSB0        (a reader on this computer)
    torwart-hub cards enroll MEMBER --site minheim --reader eingang-rfid  (a reader at the site)

At the desk the card is read with the site's own reader drivers, shown (type and printed
number), confirmed (y/N on a terminal, or ``--yes``) and enrolled; the affected caches
are rebuilt (the running hub publishes them, or ``torwart-hub push``). At a site the
signed ``enroll`` command makes the site's reader hand the next card to the hub, sealed;
each step is shown as it happens (``Hub.enroll_at_site``). The raw credential string is never
printed or logged: the admin sees the number printed on the card instead.
"""

from __future__ import annotations

import argparse
import logging
import sys

from readers.registry import device_types

from ..core import Hub
from ..enroll import describe
from ..errors import HubError
from .common import load, open_cli_hub, rebuild

log = logging.getLogger(__name__)

DESK_TIMEOUT = 30.0
SITE_TIMEOUT = 60.0


def add_parser(cards: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register ``cards enroll`` (called by hub/cli/main.py's build_parser)."""
    help_ = ("enroll a card by reading it: at a reader on this computer (--reader TYPE:DEVICE), or at a "
             "site's reader (--site SITE --reader READER)")
    p = cards.add_parser("enroll", help=help_, description=help_, parents=[common])
    p.set_defaults(func=cmd_cards_enroll)
    p.add_argument("member", help="the member's id on the booking platform (created if new)")
    desk = " or ".join(f"{t}:DEVICE" for t in device_types())
    p.add_argument("--reader", required=True,
                   help=f"at the desk: {desk} (e.g. rdm6300:/dev/ttyUSB0); "
                        "with --site: the reader's id in the site's site.toml")
    p.add_argument("--site", help="enroll at this site's reader instead of at the desk")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help=f"how long to wait for the card (default: {DESK_TIMEOUT:.0f} at the desk, "
                        f"{SITE_TIMEOUT:.0f} at a site, at most 120 there)")
    p.add_argument("--yes", action="store_true", help="enroll without asking (at the desk)")
    p.add_argument("--name", help="the member's name, when the member is new (shown to admins only)")
    p.add_argument("--email", help="the member's e-mail, when the member is new")
    p.add_argument("--label", help="at the desk: e.g. 'blue fob'")


def _say(line: str) -> None:
    print(line, flush=True)


def _member(hub: Hub, args: argparse.Namespace) -> str:
    """The member's display text; creates the member when new."""
    member_id: str = args.member
    member, created = hub.ensure_member(member_id, args.name, args.email)
    if created:
        _say(f"member {member_id} created")
        return member_id + (f" ({args.name})" if args.name else "")
    return member_id + (f" ({member.display_name})" if member.display_name else "")


def cmd_cards_enroll(args: argparse.Namespace) -> int:
    if args.site:
        return _at_site(args)
    return _at_desk(args)


def _at_desk(args: argparse.Namespace) -> int:
    from ..enroll.desk import parse_spec, read_one

    cfg = load(args)
    kind, device = parse_spec(args.reader)
    if not args.yes and not sys.stdin.isatty():
        raise HubError("no terminal to confirm on: run this in a terminal, or pass --yes to enroll the card "
                       "without being asked")
    timeout = args.timeout if args.timeout is not None else DESK_TIMEOUT
    if timeout <= 0:
        raise HubError("--timeout must be more than 0 seconds")
    with open_cli_hub(args, cfg) as hub:
        _say(f"reader: {kind} on {device}")
        credential = read_one(args.reader, timeout,
                              on_ready=lambda: _say(f"hold the card to the reader (waiting {timeout:g} s)"))
        _say(f"read: {describe(credential)}")
        owner = hub.owner_of(credential)
        if owner is not None and owner != args.member:
            raise HubError(f"this card is already enrolled to member {owner!r}; nothing enrolled (remove it there "
                           f"first: torwart-hub cards remove {owner} {hub.fingerprint(credential)})")
        if owner == args.member:
            _say(f"member {args.member} has this card already ({hub.fingerprint(credential)}); nothing to do")
            return 0
        existing = hub.member(args.member)
        who = args.member + (f" ({existing.display_name})" if existing and existing.display_name else
                             f" ({args.name})" if args.name else "")
        if args.yes:
            _say(f"enrolling it to member {who} (--yes)")
        else:
            answer = input(f"enroll this card to member {who}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes", "j", "ja"):
                _say("not enrolled")
                return 1
        added = hub.add_card(args.member, credential, name=args.name, email=args.email, label=args.label,
                             update=False)
        if added.created:
            _say(f"member {args.member} created")
        _say(f"enrolled {added.kind} card {added.fingerprint} to member {args.member}")
        rebuild(hub, added.sites)
    return 0


def _at_site(args: argparse.Namespace) -> int:
    cfg = load(args, check_files=True)
    timeout = args.timeout if args.timeout is not None else SITE_TIMEOUT
    with open_cli_hub(args, cfg) as hub:
        who = _member(hub, args)
        _say(f"enrolling a card for member {who} at site {args.site}, reader {args.reader}")
        hub.enroll_at_site(args.site, args.member, args.reader, timeout=timeout, say=_say)
    return 0
