"""``torwart-hub site add / join-code / revoke / reinstate / remove``: a site's life.

``site add`` declares the site (its ``[[sites]]`` block and the hub's copy of its credential
key) and prints a one-time join code for ``torwart-edge join``; ``--bundle`` makes the old
bundle of keys to copy instead (hub/provision/site.py)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from ..provision import fleet
from ..provision.site import site_declare
from .common import load, open_cli_hub, prepare_store, print_site_added, when

Add = Callable[..., argparse.ArgumentParser]


def _broker(args: argparse.Namespace) -> tuple[str, int | None, bool]:
    cfg = load(args)
    return (args.broker_host or cfg.mqtt.host, args.broker_port, cfg.mqtt.tls if args.tls is None else args.tls)


def _print_code(site: str, code: str, hours: float) -> None:
    until = when(time.time() + hours * 3600)
    print(f"join code for site {site} (once, until {until}):\n\n    {code}\n")
    print("on the site's Pi, as root:")
    print(f"    torwart-edge join --hub URL --code {code} --config /etc/torwart/site.toml")
    print("  URL: where the Pi reaches this hub's HTTP listener ([http] listen, or its proxy), e.g. "
          "https://hub.example")


def cmd_site_add_join(args: argparse.Namespace) -> int:
    cfg = load(args)
    host, port, tls = _broker(args)
    new_cfg, appended = site_declare(args.config, cfg, args.site, name=args.name or args.site)
    prepare_store(args, new_cfg)
    with open_cli_hub(args, new_cfg) as hub:
        code = hub.issue_join_code(args.site, broker_host=host, broker_port=port, tls=tls, hours=args.code_hours)
    where = (f"added to {args.config} (map its rooms there: [[sites.rooms]])" if appended
             else f"declared in {args.config}")
    print(f"site {args.site}: {where}")
    _print_code(args.site, code, args.code_hours)
    print_site_added(host)
    return 0


def cmd_join_code(args: argparse.Namespace) -> int:
    cfg = load(args)
    host, port, tls = _broker(args)
    with open_cli_hub(args, cfg) as hub:
        code = hub.issue_join_code(args.site, broker_host=host, broker_port=port, tls=tls, hours=args.code_hours)
    _print_code(args.site, code, args.code_hours)
    print("any earlier open code of this site no longer works")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        done = hub.revoke_site(args.site)
    for line in done:
        print(line, file=sys.stderr if line.startswith("FAILED") else sys.stdout)
    print(f"to let a new Pi join as {args.site}: torwart-hub site reinstate {args.site}")
    return 1 if any(line.startswith("FAILED") for line in done) else 0


def cmd_reinstate(args: argparse.Namespace) -> int:
    cfg = load(args)
    host, port, tls = _broker(args)
    with open_cli_hub(args, cfg) as hub:
        code = hub.reinstate_site(args.site, broker_host=host, broker_port=port, tls=tls, hours=args.code_hours)
    print(f"site {args.site} is active again; its old certificates stay revoked")
    _print_code(args.site, code, args.code_hours)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        done = hub.remove_site(args.site)
    for line in done:
        print(line)
    print(f"its events stay until retention ({cfg.hub.retention_days} days) purges them; delete its [[sites]] "
          f"block from {args.config} and restart the hub when you no longer want to see it")
    return 0


def code_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker-host", metavar="HOST", help="broker address as the Pi sees it (default: [mqtt] host)")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="default: 8883 with TLS, 1883 without")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                   help="the site logs in with its certificate over TLS (default: as [mqtt] tls); "
                        "--no-tls: by password")
    p.add_argument("--code-hours", type=float, default=fleet.DEFAULT_CODE_HOURS, metavar="H",
                   help=f"the join code expires after H hours (default: {fleet.DEFAULT_CODE_HOURS})")


def add_fleet_commands(site: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    p = add(site, "join-code", cmd_join_code, "a new one-time join code for a site (a new or re-imaged Pi)")
    p.add_argument("site")
    code_options(p)
    p = add(site, "revoke", cmd_revoke, "lock a site out now (a stolen or lost Pi): its certificates revoked, "
            "its broker login removed, its session closed, nothing published for it")
    p.add_argument("site")
    p = add(site, "reinstate", cmd_reinstate, "let a revoked site join again: prints a new join code")
    p.add_argument("site")
    code_options(p)
    p = add(site, "remove", cmd_remove, "decommission a site: revoked, its retained cache cleared and its caches "
            "dropped from the store; its events stay until retention")
    p.add_argument("site")



