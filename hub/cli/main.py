"""``torwart-hub``: the hub's command line (parsing and output; the acts are ``hub.core.Hub``'s).

    torwart-hub init        create the hub's keys, CA and broker files where missing
    torwart-hub site add    add a new site: a one-time join code for its Pi (--bundle: keys to copy)
    torwart-hub site join-code / revoke / reinstate / remove   a site's life (hub/cli/fleet.py)
    torwart-hub sites       state of every site: online, caches, events, sync health
    torwart-hub sync        one booking sync now, then rebuild the affected caches
    torwart-hub cards ...   enroll (by reading a card, at the desk or at a site), add, import, remove, list
    torwart-hub grants ...  standing grants (caretakers, cleaners)
    torwart-hub members ... a member's data: export (access request), remove (erasure)
    torwart-hub keys ...    the hub's signing keys: status, rotate, retire
    torwart-hub backup / restore   the hub's whole state to one file and back
    torwart-hub events      the event log (--csv: all of a range as CSV)
    torwart-hub audit       who did what (dashboard, API, command line), with refusals
    torwart-hub users ...   dashboard accounts (admins, caretakers)
    torwart-hub homeassistant init   Home Assistant's broker login and ACL
    torwart-hub run         run the hub (systemd); several nodes: --node NAME
    torwart-hub nodes       the hub's nodes and which one is the leader
    torwart-hub migrate-store --to URL   copy the SQLite store into PostgreSQL, verified
    torwart-hub push / unlock / lockdown   act on a site now and wait for its ack

Every command takes ``--config PATH`` after its name. A bad config exits with status 2
and names the file and the key; any other refusal exits with 1. Every command creates the
data directory and the database on first use. Output is for people; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable

from wire import software_version
from wire.errors import KeyFileError

from .. import provision
from ..booking.registry import adapter_type
from ..core import CRED_TYPES, InLockdown
from ..errors import ConfigError, HubError
from ..store.url import shown
from .admin import (
    cmd_cards_add,
    cmd_cards_import,
    cmd_cards_list,
    cmd_cards_remove,
    cmd_events,
    cmd_grants_add,
    cmd_grants_list,
    cmd_grants_remove,
    cmd_sites,
)
from .backup import add_backup_commands
from .common import iso_time, load, open_cli_hub, prepare_store, print_site_added, rebuild, setup_logging
from .export import add_audit_command, add_csv_options
from .fleet import add_fleet_commands, cmd_site_add_join
from .fleet import code_options as _code_options
from .homeassistant import add_homeassistant_commands
from .keys import add_key_commands
from .members import add_member_commands
from .migrate import add_migrate_command
from .nodes import add_node_commands, node_options
from .users import add_user_commands

log = logging.getLogger("hub")

DEFAULT_CONFIG = os.environ.get("TORWART_HUB_CONFIG", "/etc/torwart/hub.toml")


def cmd_init(args: argparse.Namespace) -> int:
    cfg = load(args)
    try:
        created = provision.init(cfg, passwd_file=args.broker_passwd, acl_file=args.broker_acl,
                                 broker_hosts=args.broker_host or (), broker_group=args.broker_group)
    except PermissionError as exc:
        raise provision.ProvisionError(f"cannot give the broker's group access: {exc}") from None
    prepare_store(args, cfg)
    if created:
        print("created:")
        for item in created:
            print(f"  {item}")
    else:
        print("nothing to do: the hub's keys, CA and broker files exist already (nothing was changed)")
    files = provision.broker_files(cfg, args.broker_passwd, args.broker_acl)
    print(f"store: {shown(cfg.hub.store_url)}")
    print("Mosquitto must use these files (firmware_configs/mosquitto/torwart.conf in /etc/mosquitto/conf.d/):")
    print(f"  the hub's listener:   password_file {files.hub_passwd}\n  every listener:       acl_file {files.acl}\n"
          f"  sites by password:    password_file {files.passwd} with use_username_as_clientid true")
    return 0


def cmd_site_add(args: argparse.Namespace) -> int:
    if not args.bundle:
        return cmd_site_add_join(args)
    cfg = load(args)
    host = args.broker_host or cfg.mqtt.host
    tls = cfg.mqtt.tls if args.tls is None else args.tls
    bundle = provision.site_add(args.config, cfg, args.site, name=args.name or args.site, broker_host=host,
                                broker_port=args.broker_port, tls=tls, out_dir=args.out,
                                passwd_file=args.broker_passwd, acl_file=args.broker_acl)
    prepare_store(args, bundle.config)
    with open_cli_hub(args, bundle.config) as hub:
        hub.record_cert(args.site, bundle.dir / f"{args.site}.crt", how="bundle")
    where = (f"added to {args.config} (map its rooms there: [[sites.rooms]])" if bundle.appended
             else f"provisioned as declared in {args.config}")
    print(f"site {args.site}: {where}")
    print(f"bundle for the Pi: {bundle.dir}")
    print("  site.toml      edit the door pins and add the readers (the keys are filled in)")
    print(f"  ca.crt, {args.site}.crt, {args.site}.key, cred.key, mqtt.password")
    print(f"copy it to the Pi, keeping modes:  rsync -a {bundle.dir}/ root@PI:/etc/torwart/")
    print("  then on the Pi:  torwart-edge check --config /etc/torwart/site.toml")
    print("  the bundle holds the site's secrets: delete it once copied")
    print(f"broker: password added to {bundle.broker.passwd}, ACL in {bundle.broker.acl}; "
          "reload Mosquitto (systemctl reload mosquitto)")
    print_site_added(host)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = load(args, check_files=True)
    now = int(time.time())
    with open_cli_hub(args, cfg) as hub:
        report = hub.sync(now, progress=lambda line: print(f"  {line}", flush=True))
        if report.ok:
            hub.record_act("bookings.sync", detail=f"{report.seen} bookings, {len(report.changed)} changed, "
                           f"{len(report.skipped)} skipped")
        else:
            hub.record_act("bookings.sync", outcome="failed", reason=report.error)
        if not report.ok:
            print(f"sync failed ({report.failures} in a row): {report.error}", file=sys.stderr)
            print("the last good bookings stay in force", file=sys.stderr)
            return 1
        docs = adapter_type(cfg.booking.adapter).wording.counted(report.pages)
        print(f"{report.source}: {report.seen} bookings {docs}, {len(report.changed)} changed, "
              f"{len(report.skipped)} skipped, {report.seconds:.1f} s")
        for s in report.skipped[:10]:
            print(f"  skipped {s.id or '(no id)'}: {s.reason}")
        if len(report.skipped) > 10:
            print(f"  ... and {len(report.skipped) - 10} more skipped")
        if report.changed:
            rebuild(hub, report.sites, now)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg, node = node_options(args, load(args, check_files=True))
    prepare_store(args, cfg)
    from .. import service

    return service.run(cfg, node)


def cmd_push(args: argparse.Namespace) -> int:
    cfg = load(args, check_files=True)
    with open_cli_hub(args, cfg) as hub:
        res = hub.push_and_wait(args.site, timeout=args.timeout)
    if res.ok:
        print(f"site {args.site} now holds version {res.version} (acknowledged in {res.seconds:.1f} s)")
        return 0
    print(f"site {args.site}: push of version {res.version} failed: {res.error}", file=sys.stderr)
    return 1


def _command(args: argparse.Namespace, action: str, what: str, door: str | None = None,
             seconds: int | None = None) -> int:
    cfg = load(args, check_files=True)
    with open_cli_hub(args, cfg) as hub:
        try:
            res = hub.command_and_wait(args.site, action, door=door, seconds=seconds, timeout=args.timeout)
        except InLockdown:
            print(f"site {args.site} is in lockdown: no door is unlocked until the lockdown ends "
                  f"(torwart-hub lockdown {args.site} --end)", file=sys.stderr)
            return 1
    if res.ok:
        print(f"site {args.site}: {what} (acknowledged in {res.seconds:.1f} s)")
        return 0
    print(f"site {args.site}: {action} failed: {res.error}", file=sys.stderr)
    return 1


def cmd_unlock(args: argparse.Namespace) -> int:
    """Refused before anything is sent when the store says the site is in lockdown (its
    last retained Status): only ending the lockdown (an admin's act) opens doors again."""
    from ..commands import MAX_UNLOCK_SECONDS

    if args.seconds is not None and not 1 <= args.seconds <= MAX_UNLOCK_SECONDS:
        raise HubError(f"--seconds must be 1..{MAX_UNLOCK_SECONDS}")
    return _command(args, "unlock", f"door {args.door} unlocked", door=args.door, seconds=args.seconds)


def cmd_lockdown(args: argparse.Namespace) -> int:
    if args.end:
        return _command(args, "lockdown_end", "lockdown ended")
    return _command(args, "lockdown", "in lockdown: badges open no door until --end (exit buttons still do)")


# --- argument parsing ---------------------------------------------------------------------------

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=DEFAULT_CONFIG,
                        help=f"the hub's config file (default: {DEFAULT_CONFIG}, or $TORWART_HUB_CONFIG)")
    common.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"],
                        help="log level on stderr (default: info for run, warning otherwise)")
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--broker-passwd", metavar="FILE", help="Mosquitto password file "
                        "(default: DATA_DIR/mosquitto/passwd)")
    broker.add_argument("--broker-acl", metavar="FILE", help="Mosquitto ACL file (default: DATA_DIR/mosquitto/acl)")

    parser = argparse.ArgumentParser(prog="torwart-hub", description="Torwart hub: bookings in, signed caches out.")
    parser.add_argument("--version", action="version", version=f"torwart-hub {software_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, fn: Command, help_: str,
            *extra: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_, parents=[common, *extra])
        p.set_defaults(func=fn)
        return p

    p = add(sub, "init", cmd_init, "create the hub's signing and enrollment keys, CA and broker files "
            "where missing (never overwrites)", broker)
    p.add_argument("--broker-host", action="append", metavar="HOST",
                   help="also issue the broker a server certificate for HOST (repeatable)")
    p.add_argument("--broker-group", metavar="GROUP",
                   help="let GROUP (one the user 'mosquitto' is in) read the broker's files: password file, ACL, "
                        "server certificate and key, CA certificate (see firmware_configs/mosquitto/torwart.conf)")

    site = sub.add_parser("site", help="provision sites").add_subparsers(dest="site_command", required=True)
    p = add(site, "add", cmd_site_add, "add a new site and print a one-time join code for its Pi "
            "(torwart-edge join); with --bundle, make its keys here instead: a site.toml bundle to copy", broker)
    p.add_argument("site", help="site id: a-z, 0-9, '-'")
    p.add_argument("--name", help="the site's name, e.g. 'Bürgerhaus Minheim'")
    _code_options(p)
    p.add_argument("--bundle", action="store_true", help="make the site's keys, broker login and certificate "
                   "here and write them with site.toml into a bundle directory to copy to the Pi")
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: DATA_DIR/provision/SITE)")
    add_fleet_commands(site, add)

    add(sub, "sites", cmd_sites, "show every site: online, cache versions, events, outbox, sync health")
    add(sub, "sync", cmd_sync, "sync bookings from the platform now, then rebuild the affected caches")

    cards = sub.add_parser("cards", help="members' credentials").add_subparsers(dest="cards_command", required=True)
    p = add(cards, "add", cmd_cards_add, "enroll a credential (e.g. em4100:0A00B1C2D3) to a member, "
            "creating the member if needed")
    p.add_argument("member", help="the member's id on the booking platform")
    p.add_argument("credential", help="TYPE:VALUE, TYPE one of " + ", ".join(CRED_TYPES))
    p.add_argument("--name", help="the member's name (shown to admins only)")
    p.add_argument("--email", help="the member's e-mail (matches ICS attendees)")
    p.add_argument("--label", help="e.g. 'blue fob'")
    p = add(cards, "import", cmd_cards_import, "enroll credentials from a CSV file "
            "(header member_id,credential[,name[,email]]); all or nothing")
    p.add_argument("file", help="the CSV file")
    p = add(cards, "remove", cmd_cards_remove, "remove a member's credential")
    p.add_argument("member")
    p.add_argument("credential", help="the credential, or its fingerprint from `cards list`")
    p = add(cards, "list", cmd_cards_list, "list members and their credentials (type and fingerprint only)")
    p.add_argument("member", nargs="?")
    from .enroll import add_parser as add_enroll

    add_enroll(cards, common)

    grants = sub.add_parser("grants", help="standing grants").add_subparsers(dest="grants_command", required=True)
    p = add(grants, "add", cmd_grants_add, "let a member's credentials open doors of a site, without a booking")
    p.add_argument("member")
    p.add_argument("site")
    p.add_argument("--doors", help="comma-separated door ids (default: every door of the site)")
    p.add_argument("--from", dest="valid_from", type=iso_time, metavar="ISO", help="start (default: now)")
    p.add_argument("--until", type=iso_time, metavar="ISO", help="end (default: until removed)")
    p.add_argument("--label", help="e.g. 'caretaker'")
    p = add(grants, "remove", cmd_grants_remove, "remove a standing grant")
    p.add_argument("id", type=int)
    p = add(grants, "list", cmd_grants_list, "list standing grants")
    p.add_argument("--site")

    add_user_commands(sub, add)
    add_member_commands(sub, add)
    add_homeassistant_commands(sub, add, broker)
    add_key_commands(sub, add)
    add_backup_commands(sub, add)
    add_migrate_command(sub, add)

    p = add(sub, "events", cmd_events, "show events sites reported (newest last)")
    p.add_argument("--site")
    p.add_argument("--type", help="e.g. access.denied")
    p.add_argument("--since", type=iso_time, metavar="ISO")
    p.add_argument("--until", type=iso_time, metavar="ISO")
    p.add_argument("--door", help="with --csv: events of this door only")
    p.add_argument("--limit", type=int, help="at most this many (default: 50, the newest; with --csv: all)")
    add_csv_options(p)
    add_audit_command(sub, add)

    run = add(sub, "run", cmd_run, "run the hub: booking sync, caches, MQTT, dashboard")
    add_node_commands(sub, add, run)
    p = add(sub, "push", cmd_push, "publish a site's full cache now and wait for its acknowledgement")
    p.add_argument("site")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the ack (default: 30)")
    p = add(sub, "unlock", cmd_unlock, "unlock a door of a site now")
    p.add_argument("site")
    p.add_argument("door")
    p.add_argument("--seconds", type=int, help="how long (default: the door's unlock time)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the ack (default: 30)")
    p = add(sub, "lockdown", cmd_lockdown, "put a site into lockdown (no badge opens a door), or end it")
    p.add_argument("site")
    p.add_argument("--end", action="store_true", help="end the lockdown")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the ack (default: 30)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already explained (status 2)
        return exc.code if isinstance(exc.code, int) else 2
    setup_logging(args.log_level or ("info" if args.command == "run" else "warning"))
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyFileError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1

