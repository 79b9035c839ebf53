"""``torwart-hub users``: dashboard accounts (add, list, remove).

    torwart-hub users add NAME --role admin|caretaker --sites a,b [--password-file F]
        [--email ADDRESS] [--lang de|en] [--alert-kinds K,L|*] [--quiet HH:MM-HH:MM]
    torwart-hub users alerts NAME [--email ADDRESS|-] [--lang de|en] [--alert-kinds K,L|*|-]
        [--channels email] [--quiet HH:MM-HH:MM|off]
    torwart-hub users list
    torwart-hub users remove NAME

Without ``--password-file`` the password is asked twice on the terminal; when stdin is
not a terminal the command refuses rather than read a password from a pipe by accident.
The store keeps only a scrypt hash. Removing a user ends its sessions at once, also in a
running hub (sessions are looked up in the store on every request).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import re
import sys
from collections.abc import Callable

from ..alerts.audience import format_quiet, make_prefs
from ..config import read_secret
from ..core import Hub
from ..errors import ConfigError, HubError
from ..store import AlertPrefs
from .common import load, open_cli_hub, table, when

log = logging.getLogger("hub")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: An e-mail address, roughly: one @, no spaces, a dot in the domain.
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

Add = Callable[..., argparse.ArgumentParser]


def _sites(hub: Hub, role: str, text: str | None) -> list[str] | None:
    """The sites a new user may see (None: all), checked against the config."""
    if text is None:
        if role == "caretaker":
            raise HubError("a caretaker needs --sites (comma-separated site ids, or '*' for every site)")
        return None
    if text.strip() == "*":
        return None
    sites = [s.strip() for s in text.split(",") if s.strip()]
    if not sites:
        raise HubError("--sites is empty")
    unknown = [s for s in sites if not hub.knows(s)]
    if unknown:
        known = {s.id for s in hub.cfg.sites}
        raise HubError(f"no site {unknown[0]!r} in the config (sites: {', '.join(sorted(known)) or 'none'})")
    return sites


def _password(args: argparse.Namespace) -> str:
    from ..dashboard.passwords import check_strength

    if args.password_file:
        try:
            password = read_secret(args.password_file)
        except ConfigError as exc:
            raise HubError(f"--password-file: {exc}") from None
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("the same again: ") != password:
            raise HubError("the passwords differ; nothing was changed")
    else:
        raise HubError("stdin is not a terminal, so the password cannot be asked: "
                       "use --password-file FILE (readable by its owner only)")
    why = check_strength(password)
    if why is not None:
        raise HubError(why)
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from ..dashboard.passwords import hash_password

    cfg = load(args)
    if not NAME_RE.match(args.name):
        raise HubError("a user name is 1-64 characters: letters, digits, '.', '_', '@', '-'")
    if args.email is not None and not EMAIL_RE.match(args.email):
        raise HubError(f"--email {args.email!r} is not an e-mail address (NAME@DOMAIN); nothing was changed")
    prefs = _prefs(args.name, args, AlertPrefs(user=args.name))
    with open_cli_hub(args, cfg) as hub:
        sites = _sites(hub, args.role, args.sites)
        if hub.user(args.name) is not None:
            raise HubError(f"a user {args.name!r} exists already (remove it first to change it)")
        hub.add_user(args.name, args.role, sites, hash_password(_password(args)), args.email)
        if prefs != AlertPrefs(user=args.name):
            hub.set_alert_settings(prefs)
    where = "every site" if sites is None else ", ".join(sites)
    print(f"user {args.name} added: {args.role} of {where}")
    return 0


def _prefs(name: str, args: argparse.Namespace, old: AlertPrefs) -> AlertPrefs:
    """The alert options given, over ``old``; HubError naming the option otherwise."""
    quiet = getattr(args, "quiet", None)
    try:
        return make_prefs(
            name, lang=args.lang or old.lang,
            kinds=args.alert_kinds if args.alert_kinds is not None else
            (None if old.kinds is None else ",".join(old.kinds) or "-"),
            channels=getattr(args, "channels", None) or ",".join(old.channels),
            quiet=quiet if quiet is not None else format_quiet(old))
    except ValueError as exc:
        raise HubError(f"{exc}; nothing was changed") from None


def cmd_users_alerts(args: argparse.Namespace) -> int:
    """Change what an existing user hears (only the options given change)."""
    cfg = load(args)
    email = args.email
    if email is not None and email != "-" and not EMAIL_RE.match(email):
        raise HubError(f"--email {email!r} is not an e-mail address (NAME@DOMAIN); nothing was changed")
    with open_cli_hub(args, cfg) as hub:
        user = hub.user(args.name)
        if user is None:
            raise HubError(f"no user {args.name!r}")
        prefs = _prefs(args.name, args, hub.alert_settings(args.name))
        hub.set_alert_settings(prefs)
        if email is not None:
            hub.set_user_email(args.name, None if email == "-" else email)
            user = hub.user(args.name)
    kinds = "every kind" if prefs.kinds is None else ", ".join(prefs.kinds) or "nothing"
    quiet = format_quiet(prefs) or "none"
    print(f"user {args.name}: {kinds} by {', '.join(prefs.channels) or 'no channel'} to "
          f"{(user.email if user else None) or 'no address'}, in {prefs.lang}; quiet hours {quiet}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        users, active = hub.users()
    table(["NAME", "ROLE", "SITES", "CREATED", "SESSIONS", "EMAIL"],
           [[u.name, u.role, "*" if u.sites is None else ",".join(u.sites), when(u.created_at),
             active.get(u.name, 0), u.email or "-"] for u in users])
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        if not hub.remove_user(args.name):
            raise HubError(f"no user {args.name!r}")
    print(f"user {args.name} removed (and logged out)")
    return 0


def add_user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    """Register ``users add|list|remove`` (``add`` is the parser helper of ``build_parser``)."""
    users = sub.add_parser("users", help="dashboard accounts").add_subparsers(dest="users_command", required=True)
    p = add(users, "add", cmd_users_add, "add a dashboard account (the password is asked twice, or read "
            "from --password-file)")
    p.add_argument("name", help="login name")
    p.add_argument("--role", required=True, choices=["admin", "caretaker"],
                   help="admin: every action and names; caretaker: counts, unlock and check-out of their sites")
    p.add_argument("--sites", metavar="A,B", help="the sites the user sees, comma-separated, or '*' "
                   "(default for admins: every site)")
    p.add_argument("--password-file", metavar="FILE", help="read the password from FILE (owner-readable only)")
    p.add_argument("--email", metavar="ADDRESS", help="where the user's alerts go by e-mail ([alerts] in hub.toml)")
    _alert_options(p, change=False)
    p = add(users, "alerts", cmd_users_alerts, "change what a user hears about, how, in which language and when "
            "not (only the options given change)")
    p.add_argument("name")
    p.add_argument("--email", metavar="ADDRESS", help="where the user's alerts go by e-mail ('-': nowhere)")
    _alert_options(p, change=True)
    add(users, "list", cmd_users_list, "list dashboard accounts and their open sessions")
    p = add(users, "remove", cmd_users_remove, "remove a dashboard account and end its sessions")
    p.add_argument("name")


def _alert_options(p: argparse.ArgumentParser, *, change: bool) -> None:
    p.add_argument("--lang", choices=["de", "en"], help="the language of the user's alert messages (default de)")
    p.add_argument("--alert-kinds", metavar="K,L", help="the alert kinds the user hears about, comma-separated, "
                   "'*' for every kind (the default)" + (", '-' for none" if change else ""))
    p.add_argument("--quiet", metavar="HH:MM-HH:MM", help="quiet hours (local time): non-urgent alerts wait "
                   "until they end" + ("; 'off' for none" if change else ""))
    if change:
        p.add_argument("--channels", metavar="C,D", help="where alerts go: email (the only channel so far)")
