"""``torwart-hub cards enroll``: enroll a card by reading it, at the admin's desk or at a site.

    torwart-hub cards enroll MEMBER --reader rdm6300:/dev/ttyUSB0        (a reader on this computer)
    torwart-hub cards enroll MEMBER --site minheim --reader eingang-rfid  (a reader at the site)

At the desk the card is read with the site's own reader drivers, shown (type and printed
number), confirmed (y/N on a terminal, or ``--yes``) and enrolled; the affected caches
are rebuilt (the running hub publishes them, or ``torwart-hub push``). At a site the
signed ``enroll`` command makes the site's reader hand the next card to the hub, sealed;
each step is shown as it happens (hub/enroll_site.py). The raw credential string is never
printed or logged: the admin sees the number printed on the card instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .cli_admin import _fingerprint, _member_sites
from .cli_common import _load, _rebuild, _store
from .enroll import describe
from .errors import HubError
from .store import Store

log = logging.getLogger(__name__)

DESK_TIMEOUT = 30.0
SITE_TIMEOUT = 60.0


def add_parser(cards: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register ``cards enroll`` (called by hub/__main__.py's build_parser)."""
    help_ = ("enroll a card by reading it: at a reader on this computer (--reader TYPE:DEVICE), or at a "
             "site's reader (--site SITE --reader READER)")
    p = cards.add_parser("enroll", help=help_, description=help_, parents=[common])
    p.set_defaults(func=cmd_cards_enroll)
    p.add_argument("member", help="the member's id on the booking platform (created if new)")
    p.add_argument("--reader", required=True,
                   help="at the desk: rdm6300:DEVICE or pn532:DEVICE (e.g. rdm6300:/dev/ttyUSB0); "
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


def _member(store: Store, args: argparse.Namespace) -> str:
    """The member's display text; creates the member when new."""
    member_id: str = args.member
    member = store.get_member(member_id)
    if member is None:
        store.add_member(member_id, args.name or "", args.email)
        _say(f"member {member_id} created")
        return member_id + (f" ({args.name})" if args.name else "")
    return member_id + (f" ({member.display_name})" if member.display_name else "")


def cmd_cards_enroll(args: argparse.Namespace) -> int:
    if args.site:
        return _at_site(args)
    return _at_desk(args)


def _at_desk(args: argparse.Namespace) -> int:
    from .enroll_desk import parse_spec, read_one

    cfg = _load(args)
    kind, device = parse_spec(args.reader)
    if not args.yes and not sys.stdin.isatty():
        raise HubError("no terminal to confirm on: run this in a terminal, or pass --yes to enroll the card "
                       "without being asked")
    timeout = args.timeout if args.timeout is not None else DESK_TIMEOUT
    if timeout <= 0:
        raise HubError("--timeout must be more than 0 seconds")
    with _store(cfg) as store:
        _say(f"reader: {kind} on {device}")
        credential = read_one(args.reader, timeout,
                              on_ready=lambda: _say(f"hold the card to the reader (waiting {timeout:g} s)"))
        _say(f"read: {describe(credential)}")
        owner = store.owner_of_credential(credential)
        if owner is not None and owner != args.member:
            raise HubError(f"this card is already enrolled to member {owner!r}; nothing enrolled (remove it there "
                           f"first: torwart-hub cards remove {owner} {_fingerprint(store, credential)})")
        if owner == args.member:
            _say(f"member {args.member} has this card already ({_fingerprint(store, credential)}); nothing to do")
            return 0
        existing = store.get_member(args.member)
        who = args.member + (f" ({existing.display_name})" if existing and existing.display_name else
                             f" ({args.name})" if args.name else "")
        if args.yes:
            _say(f"enrolling it to member {who} (--yes)")
        else:
            answer = input(f"enroll this card to member {who}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes", "j", "ja"):
                _say("not enrolled")
                return 1
        _member(store, args)
        store.add_credential(args.member, credential, label=args.label)
        _say(f"enrolled {credential.partition(':')[0]} card {_fingerprint(store, credential)} to member {args.member}")
        now = int(time.time())
        _rebuild(cfg, store, _member_sites(store, {args.member}, now), now)
    return 0


def _at_site(args: argparse.Namespace) -> int:
    from .enroll_site import enroll_at_site

    cfg = _load(args, check_files=True)
    timeout = args.timeout if args.timeout is not None else SITE_TIMEOUT
    with _store(cfg) as store:
        who = _member(store, args)
        _say(f"enrolling a card for member {who} at site {args.site}, reader {args.reader}")
        enroll_at_site(cfg, store, args.site, args.member, args.reader, timeout=timeout, say=_say)
    return 0
