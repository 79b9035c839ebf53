"""``torwart-hub nodes``: the hub's nodes on its store and which one leads; and the options
of ``torwart-hub run`` that set a node apart from the others started from one config.

    torwart-hub nodes [--all]
    torwart-hub nodes --forget NAME
    torwart-hub run [--node NAME] [--listen HOST:PORT]

``nodes`` lists each node that runs (heard of within two lease times): its name, host,
pid, version, when it was last heard of, ``*`` for the leader, and the lease's expiry on
the leader's line; ``--all`` adds the nodes that stopped or are gone. With none running
it says so (and when the last one was heard of), exit status 0. ``--forget NAME`` removes
a node that stopped or is gone from the list (a retired machine); a running node, or a name
the store does not know, is refused (exit 1) and nothing changes.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

import msgspec

from ..config import HubConfig
from ..errors import HubError
from ..leader import GONE_AFTER_LEASES, alive
from ..store import Store, open_store
from .common import ago, load, table

Add = Callable[..., argparse.ArgumentParser]

#: A node's name: it goes into the node's MQTT client id.
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def cmd_nodes(args: argparse.Namespace) -> int:
    cfg = load(args)
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    secs = cfg.hub.leader_lease_seconds
    with open_store(cfg.hub.store_url) as store:
        if args.forget is not None:
            return _forget(store, args.forget, secs)
        rows, lease = store.nodes(), store.lease()
    now = time.time()  # after the read: no heartbeat is in its future
    running = [r for r in rows if alive(r, now, secs)]
    shown = rows if args.all else running
    leader = lease.holder if lease is not None and lease.expires_at > now else None
    if not rows:
        print("no hub node has run on this store yet")
        return 0
    if not running:
        last = max(rows, key=lambda r: r.last_seen)
        print(f"no hub node is running (the last, {last.id} on {last.host}, was heard of {ago(last.last_seen, now)})")
        if not args.all:
            return 0
    table(["node", "host", "pid", "version", "last seen", "leader", "lease until", "state"], [
        [r.id, r.host, r.pid, r.version, ago(r.last_seen, now), "*" if r.id == leader else "",
         ago(lease.expires_at, now) if lease is not None and r.id == leader else None,
         _state(r.role, alive(r, now, secs))]
        for r in shown
    ])
    if lease is not None:
        if leader is None:
            print(f"no leader now (the lease of term {lease.term} ended {ago(lease.expires_at, now)}; "
                  f"a running node takes it within {secs:g} s)")
        else:
            print(f"leader: {leader} (term {lease.term}, since {ago(lease.acquired_at, now)}, "
                  f"after {lease.vacant:.1f} s without a leader)")
    return 0


def _forget(store: Store, name: str, secs: float) -> int:
    row = next((r for r in store.nodes() if r.id == name), None)
    if row is None:
        raise HubError(f"no node {name!r} on this store (torwart-hub nodes --all lists them)")
    if alive(row, time.time(), secs):
        raise HubError(f"node {name!r} is running (pid {row.pid} on {row.host}): stop it first")
    store.forget_node(name)
    print(f"node {name} forgotten")
    return 0


def _state(role: str, running: bool) -> str:
    if role == "stopped":
        return "stopped"
    return "running" if running else f"gone (not heard of for {GONE_AFTER_LEASES:g} lease times)"


def node_options(args: argparse.Namespace, cfg: HubConfig) -> tuple[HubConfig, str | None]:
    """``run``'s ``--node`` and ``--listen`` applied: the config with the node's HTTP
    address, and the node's name (None: the default); HubError on a bad value."""
    node = args.node
    if node is not None and not NODE_NAME.match(node):
        raise HubError(f"--node {node!r}: a node's name is 1-63 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit")
    if args.listen is not None:
        from ..config import _split_listen

        try:
            _split_listen(args.listen)
        except ValueError as exc:
            raise HubError(f"--listen {args.listen!r}: {exc}") from None
        cfg = msgspec.structs.replace(cfg, http=msgspec.structs.replace(cfg.http, listen=args.listen))
    return cfg, node


def add_node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add,
                      run: argparse.ArgumentParser) -> None:
    """``nodes``, and ``run``'s node options (on its parser ``run``)."""
    p = add(sub, "nodes", cmd_nodes, "show the hub's nodes on its store and which one is the leader")
    p.add_argument("--all", action="store_true", help="also the nodes that stopped or are gone")
    p.add_argument("--forget", metavar="NAME", help="remove a node that stopped or is gone from the list")
    run.add_argument("--node", metavar="NAME", default=None,
                     help="this node's name among several (default: $TORWART_HUB_NODE, else the host name)")
    run.add_argument("--listen", metavar="HOST:PORT", default=None,
                     help="serve HTTP here instead of [http] listen (several nodes on one machine)")
