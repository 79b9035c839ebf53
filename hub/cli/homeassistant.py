"""``torwart-hub homeassistant init``: Home Assistant's broker login and ACL."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..provision import homeassistant as ha_provision
from .common import load

Add = Callable[..., argparse.ArgumentParser]


def cmd_homeassistant_init(args: argparse.Namespace) -> int:
    cfg = load(args)
    login = ha_provision.init(cfg, passwd_file=args.broker_passwd, acl_file=args.broker_acl,
                              new_password=args.new_password)
    if login.changed:
        print("made or changed:")
        for item in login.changed:
            print(f"  {item}")
        print(f"reload Mosquitto to apply (systemctl reload mosquitto); ACL {login.acl}")
    else:
        print("nothing to do: Home Assistant's login exists (--new-password makes a new password)")
    ha = cfg.homeassistant
    print("In Home Assistant, Settings → Devices & services → MQTT → Configure:")
    print(f"  broker: the sites' broker, username {login.user}, password in {login.password_file}")
    if login.cert_file is not None:
        print(f"  or TLS with the client certificate {login.cert_file} and key {login.key_file}")
    print(f"  discovery prefix: {ha.prefix}")
    if ha.control:
        print(f"  locks and lockdown switches act with the permissions of dashboard user {ha.user!r}")
    print("these files are secrets: copy them into Home Assistant, then keep them only here")
    return 0


def add_homeassistant_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add,
                               broker: argparse.ArgumentParser) -> None:
    """Register ``homeassistant init`` (``add`` is the parser helper of ``build_parser``)."""
    group = sub.add_parser("homeassistant", help="Home Assistant's broker login") \
        .add_subparsers(dest="homeassistant_command", required=True)
    p = add(group, "init", cmd_homeassistant_init, "make Home Assistant's broker login (password and client "
            "certificate) and give it the ACL it needs: read the sites' state, write requests to the hub", broker)
    p.add_argument("--new-password", action="store_true", help="replace the login's password")
