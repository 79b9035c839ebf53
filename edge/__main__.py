"""``torwart-edge``: the site agent's command line.

    torwart-edge run    --config PATH   run the agent (systemd: Type=notify, watchdog)
    torwart-edge join   --hub URL --code CODE --config PATH
                                        join the hub: keys made here, certificate and settings
                                        from the hub (edge/join.py); renewed by ``run``
    torwart-edge check  --config PATH   validate the config and print the resolved site; names
                                        gpiozero's pin factory, refuses a fail-secure lock relay
                                        on a pin the Pi pulls high at boot (edge/pins.py), and
                                        says which source of truth judges the clock (chrony's
                                        authenticated verdict or the kernel's NTP flag)
    torwart-edge status --config PATH   cache, outbox and recent events from the local database
    torwart-edge doors test / readers watch   bring-up at the door (edge/bringup.py)
    torwart-edge readers keyset --config PATH READER
                                        put a factory-fresh OSDP reader on a new key (writes scbk_file)

Only one of ``run``, the bring-up commands and ``readers keyset`` may hold a site at a time
(an flock in its data directory, edge/runlock.py); the second is refused with exit status 3.

Test hook (never on a real site): with ``TORWART_CLOCK_OFFSET_FILE=PATH`` in the environment
``run`` takes its wall clock from an ``edge.clock.OffsetClock``: system time plus the offset
(seconds) in PATH, re-read when the file changes; ``TORWART_CLOCK_NTP=synced|unsynced``
forces its NTP flag. The chaos run (scripts/chaos) steps one site's clock this way.

A bad config stops every command before it touches a pin: the error names the file and
the key, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys

from wire import software_version
from wire.entrypoint import setup_logging, stop_on_signals

from . import config as config_mod
from . import malloc
from .clock import ClockSource
from .errors import ConfigError, EdgeError
from .runlock import DataDirBusy

log = logging.getLogger("edge")


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    malloc.tune()
    from .agent import Agent  # imported after the config is known good: gpiozero claims nothing before

    agent = Agent(cfg, clock=_test_clock())
    stop_on_signals(agent.stop)
    agent.run()
    return 0


def _test_clock() -> ClockSource | None:
    """The test and chaos hook (never on a real site): ``TORWART_CLOCK_OFFSET_FILE`` runs the
    agent on an ``OffsetClock`` (system time + the offset in that file, re-read when it
    changes), ``TORWART_CLOCK_NTP`` = ``synced`` / ``unsynced`` forces its NTP flag."""
    path = os.environ.get("TORWART_CLOCK_OFFSET_FILE")
    if not path:
        return None
    from .clock import OffsetClock

    ntp = os.environ.get("TORWART_CLOCK_NTP", "").strip().lower()
    forced = {"synced": True, "unsynced": False}.get(ntp)
    log.warning("TEST HOOK: clock = system time + the offset in %s (TORWART_CLOCK_OFFSET_FILE)%s", path,
                f", NTP forced {ntp}" if forced is not None else "")
    return OffsetClock(path, synchronized=forced)


def cmd_check(args: argparse.Namespace) -> int:
    from . import pins
    from .clock import describe, site_clock

    cfg = config_mod.load(args.config)
    pins.check_boot_levels(cfg, str(args.config))
    print(f"site {cfg.site.id} ({cfg.site.name or 'no name'}), data in {cfg.site.data_dir}, "
          f"time zone {cfg.site.timezone}")
    hub = cfg.hub
    auth = ", ".join(x for x in (
        "password" if hub.password_file else "", "client certificate" if hub.cert_file else "") if x) or "anonymous"
    print(f"hub   {hub.host}:{hub.effective_port} tls={'on' if hub.tls else 'off'} auth={auth}")
    for r in cfg.rooms:
        print(f"room  {r.id}: {r.name or '-'} capacity={r.capacity if r.capacity is not None else '-'}"
              f"{' toggle' if r.toggle else ''}")
    for d in cfg.doors:
        extras = ", ".join(f"{k}={getattr(d, k)}" for k in ("contact_pin", "exit_pin", "buzzer_pin", "led_pin")
                           if getattr(d, k) is not None)
        print(f"door  {d.id}: room={d.room or '-'} lock_pin={d.lock_pin} active_high={d.lock_active_high} "
              f"fail={d.fail} unlock={d.unlock_seconds}s {extras}".rstrip())
    for rd in cfg.readers:
        print(f"reader {rd.id}: {rd.type} at {rd.settings.where()} → door {rd.door} ({rd.direction})")
    print(f"pins  gpiozero pin factory {pins.pin_factory_name()}")
    print(f"policy retention={cfg.policy.retention_days}d clock_trust={cfg.policy.clock_trust} "
          f"deny_burst={cfg.policy.deny_burst} refill={cfg.policy.deny_refill_seconds}s")
    print(f"clock {describe(site_clock(cfg.policy.clock_trust, cfg.policy.chrony_socket), cfg.policy.clock_trust)}")
    print("config OK")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .cache import CacheStore
    from .outbox import Outbox
    from .trust import Trust

    cfg = config_mod.load(args.config, check_files=False)
    data = cfg.data_path
    if not (data / "cache.db").exists():
        print(f"site {cfg.site.id}: no local database yet in {data} (the agent has not run)")
        return 1
    with CacheStore(data / "cache.db", read_only=True) as cache:
        meta = cache.meta()
        trusted = Trust(cfg.hub.signing_public_key, cache.trusted_keys(cfg.hub.signing_public_key)).kids()
    print(f"site {cfg.site.id}")
    print(f"cache    version {meta.version if meta.version is not None else '-'}, {meta.entry_count} entries, "
          f"issued {_when(meta.issued_at)}, expires {_when(meta.expires_at)}, applied {_when(meta.applied_at)}")
    print(f"hub keys trusted: {' '.join(trusted)}")
    ob = Outbox(data / "outbox.db", cfg.site.id, "status", read_only=True)
    try:
        stream, base = ob.stream_info
        print(f"outbox   stream {stream or '-'}{f' (after seq {base})' if base else ''}, last seq {ob.last_seq}, "
              f"acknowledged up to {ob.acked_upto}, {ob.pending_count()} pending")
        print("recent events:")
        for ev in ob.recent(args.events):
            extra = " ".join(f"{k}={ev[k]}" for k in ("door", "reason", "room", "version", "error", "reader")
                             if ev.get(k) is not None)
            print(f"  #{ev['seq']:<6} {_when(ev['ts'])}  {ev['type']:<20} {extra}")
    finally:
        ob.close()
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from .join import join

    joined = join(args.hub, args.code, args.config)
    print(f"joined the hub as site {joined.site} ({joined.name}); certificate valid until "
          f"{_when(joined.not_after)}, renewed automatically")
    for f in joined.files:
        print(f"  wrote {f}")
    if joined.merged:
        print(f"  updated {joined.config} (its hub and site keys; the old file is {joined.config}.before-join)")
    else:
        print(f"  wrote {joined.config}: set every door's lock_pin and add the readers, then")
    print(f"check it:  torwart-edge check --config {joined.config}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torwart-edge", description="Torwart site agent")
    parser.add_argument("--version", action="version", version=f"torwart-edge {software_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("run", cmd_run, "run the agent"),
                            ("check", cmd_check, "validate the config and print the resolved site"),
                            ("status", cmd_status, "show cache, outbox and recent events")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True, help="the site's TOML file")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        if name == "status":
            p.add_argument("--events", type=int, default=10, help="how many recent events to show")
        p.set_defaults(fn=fn)
    p = sub.add_parser("join", help="join the hub with a one-time code: make this site's keys, get its "
                       "certificate and settings, write the config")
    p.add_argument("--hub", required=True, metavar="URL", help="the hub's HTTP address, e.g. https://hub.example")
    p.add_argument("--code", required=True, help="the join code `torwart-hub site add` printed")
    p.add_argument("--config", required=True, help="where to write the site's TOML file (its keys go beside it)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(fn=cmd_join)
    from .bringup import add_commands

    add_commands(sub)  # doors test, readers watch and keyset (bring-up at the door)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        rc: int = args.fn(args)
        return rc
    except ConfigError as exc:
        print(f"torwart-edge: config error: {exc}", file=sys.stderr)
        return 2
    except DataDirBusy as exc:
        print(f"torwart-edge: {exc}", file=sys.stderr)
        return 3
    except EdgeError as exc:
        print(f"torwart-edge: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
