"""``torwart-hub``: the hub's command line.

    torwart-hub init        create the hub's keys, CA and broker files where missing
    torwart-hub site add    provision a new site: keys, broker login, certificate, site.toml
    torwart-hub sites       state of every site: online, caches, events, sync health
    torwart-hub sync        one booking sync now, then rebuild the affected caches
    torwart-hub cards ...   enroll, import, remove and list members' credentials
    torwart-hub grants ...  standing grants (caretakers, cleaners)
    torwart-hub events      the event log
    torwart-hub run         run the hub (systemd)
    torwart-hub push / unlock / lockdown   act on a site now and wait for its ack

Every command takes ``--config PATH`` after its name. A bad config exits with status 2
and names the file and the key; any other refusal exits with 1. Every command creates the
data directory and the database on first use. Output is for people; logs go to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wire import software_version
from wire.errors import KeyFileError

from . import config as config_mod
from . import provision
from .config import HubConfig
from .errors import ConfigError, HubError
from .store import open_store
from .store_types import Store

log = logging.getLogger("hub")

DEFAULT_CONFIG = os.environ.get("TORWART_HUB_CONFIG", "/etc/torwart/hub.toml")
_logging_ready = False


def setup_logging(level: str) -> None:
    """One line per record on stderr; journald adds its own time stamps, a terminal gets ours.

    Configured once per process; a process that has configured logging already (a test
    runner, a program embedding the CLI) keeps its own handlers and levels."""
    global _logging_ready  # noqa: PLW0603 (the entry point configures logging once)
    if _logging_ready or logging.getLogger().handlers:
        return
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty() or not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    _logging_ready = True


# --- shared helpers ---------------------------------------------------------------------------


def _load(args: argparse.Namespace, *, check_files: bool = False) -> HubConfig:
    return config_mod.load(args.config, check_files=check_files)


@contextmanager
def _store(cfg: HubConfig) -> Iterator[Store]:
    """The hub's store, created (with its directory) on first use; sites synced from cfg."""
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(cfg.hub.store_path)
    try:
        store.sync_sites(cfg.sites)
        yield store
    finally:
        store.close()


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M")


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = now - t
    sign, s = ("in ", -s) if s < 0 else ("", s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{sign}{int(s // size)}{unit}" + ("" if sign else " ago")
    return f"{sign}{int(s)}s" + ("" if sign else " ago")


def _iso_time(text: str) -> int:
    """argparse type: ISO 8601 (date or date-time; local time without an offset)."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T08:00)") from None
    return int((t if t.tzinfo is not None else t.astimezone()).timestamp())


def _rebuild(cfg: HubConfig, store: Store, sites: set[str] | frozenset[str], now: int) -> None:
    """Rebuild the caches of ``sites``; the running hub publishes new versions."""
    from .caches import CacheManager

    configured = [s.id for s in cfg.sites if s.id in sites]
    if not configured:
        return
    try:
        key = config_mod.signing_key(cfg)
    except KeyFileError as exc:
        raise HubError(f"signing key: {exc.args[0]} (run `torwart-hub init`)") from None
    caches = CacheManager(store, cfg, key)
    for site in configured:
        version = caches.rebuild(site, now)
        print(f"site {site}: " + (f"new cache version {version} (the running hub publishes it)"
                                  if version is not None else "cache unchanged"))


# --- credentials ------------------------------------------------------------------------------

CRED_TYPES = ("em4100", "iso14443a", "wiegand26", "wiegand34", "pin")


def _credential(text: str) -> str:
    """A credential string in its PROTOCOL.md §1 form (type lower case, hex upper case).
    Errors say what is wrong without repeating the credential."""
    from wire.creds import check_credential
    from wire.errors import WireError

    kind, sep, value = text.strip().partition(":")
    kind = kind.lower()
    if not sep or kind not in CRED_TYPES:
        raise HubError(f"a credential is TYPE:VALUE with TYPE one of {', '.join(CRED_TYPES)} "
                       "(e.g. em4100:0A00B1C2D3)")
    cred = f"{kind}:{value if kind == 'pin' else value.upper()}"
    try:
        return check_credential(cred)
    except WireError:
        raise HubError(f"the {kind} credential has a malformed value") from None


def _fingerprint(store: Store, credential: str) -> str:
    """A short stable tag to tell credentials apart in listings: keyed, because a bare
    hash of a 4-digit pin would give the pin away."""
    return hmac.new(store.hub_secret("card-fingerprint"), credential.encode(), hashlib.sha256).hexdigest()[:8]


def _member_sites(store: Store, members: set[str], now: int) -> set[str]:
    from .caches import LOOK_BACK

    sites: set[str] = set()
    for member in members:
        sites |= store.sites_for_member(member, now - LOOK_BACK)
    return sites


# --- commands -----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    cfg = _load(args)
    created = provision.init(cfg, passwd_file=args.broker_passwd, acl_file=args.broker_acl,
                             broker_hosts=args.broker_host or ())
    with _store(cfg):
        pass
    if created:
        print("created:")
        for item in created:
            print(f"  {item}")
    else:
        print("nothing to do: the hub's keys, CA and broker files exist already (nothing was changed)")
    files = provision.broker_files(cfg, args.broker_passwd, args.broker_acl)
    print(f"database: {cfg.hub.store_path}")
    print("Mosquitto must use these files (e.g. in /etc/mosquitto/conf.d/torwart.conf):")
    print(f"  password_file {files.passwd}\n  acl_file {files.acl}\n  allow_anonymous false")
    return 0


def cmd_site_add(args: argparse.Namespace) -> int:
    cfg = _load(args)
    host = args.broker_host or cfg.mqtt.host
    tls = cfg.mqtt.tls if args.tls is None else args.tls
    bundle = provision.site_add(args.config, cfg, args.site, name=args.name or args.site, broker_host=host,
                                broker_port=args.broker_port, tls=tls, out_dir=args.out,
                                passwd_file=args.broker_passwd, acl_file=args.broker_acl)
    with _store(bundle.config):
        pass
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
    print("restart the hub to serve the new site (systemctl restart torwart-hub)")
    if host in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the site will connect to {host}; a Pi needs the broker's public name (--broker-host)",
              file=sys.stderr)
    return 0


def cmd_sites(args: argparse.Namespace) -> int:
    cfg = _load(args)
    now = time.time()
    rows: list[list[object]] = []
    with _store(cfg) as store:
        states = {s.site_id: s for s in store.site_states()}
        for site in cfg.sites:
            st = states.get(site.id)
            cache = store.cache_state(site.id)
            if st is None or st.since is None:
                state = "never seen"
            else:
                state = f"{'online' if st.online else 'offline'} since {_when(st.since)}"
            built = f"v{cache.version} {cache.n_entries} entries, {_ago(cache.built_at, now)}" if cache else "none"
            applied = None if st is None or st.cache_version is None else (
                f"v{st.cache_version}" + (" (latest)" if cache and st.cache_version == cache.version else "")
                + (f", expires {_ago(st.cache_expires_at, now)}" if st.cache_expires_at else ""))
            events = None if st is None else (f"{st.max_seq}/{st.acked_upto}"
                                              + (f", {len(st.gaps)} gaps" if st.gaps else ""))
            rows.append([site.id, site.name, state, built, applied, _ago(st.last_seen if st else None, now),
                         events, None if st is None else st.outbox_pending])
        _table(["SITE", "NAME", "STATE", "CACHE AT HUB", "CACHE AT SITE", "LAST SEEN", "SEQ/ACKED", "OUTBOX"],
               rows)
        sync = store.get_sync_state(cfg.booking.adapter)
    if sync.last_ok_at is None and sync.failures == 0:
        health = "never run"
    elif sync.failures:
        health = (f"FAILING, {sync.failures} in a row since {_when(sync.last_error_at)}; last ok "
                  f"{_ago(sync.last_ok_at, now)}; last error: {sync.last_error}")
    else:
        health = f"ok, last sync {_ago(sync.last_ok_at, now)}"
    print(f"\nbooking sync ({cfg.booking.adapter}): {health}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from .sync import BookingSync

    cfg = _load(args, check_files=True)
    now = int(time.time())
    with _store(cfg) as store, BookingSync(cfg, store) as sync:
        report = sync.run_once(now, progress=lambda line: print(f"  {line}", flush=True))
        if not report.ok:
            print(f"sync failed ({report.failures} in a row): {report.error}", file=sys.stderr)
            print("the last good bookings stay in force", file=sys.stderr)
            return 1
        docs = f"from {report.pages} feeds" if cfg.booking.adapter == "ics" else f"in {report.pages} pages"
        print(f"{report.source}: {report.seen} bookings {docs}, {len(report.changed)} changed, "
              f"{len(report.skipped)} skipped, {report.seconds:.1f} s")
        for s in report.skipped[:10]:
            print(f"  skipped {s.id or '(no id)'}: {s.reason}")
        if len(report.skipped) > 10:
            print(f"  ... and {len(report.skipped) - 10} more skipped")
        if report.changed:
            _rebuild(cfg, store, report.sites, now)
    return 0


def cmd_cards_add(args: argparse.Namespace) -> int:
    cfg = _load(args)
    cred = _credential(args.credential)
    kind = cred.partition(":")[0]
    with _store(cfg) as store:
        owner = store.owner_of_credential(cred)
        if owner is not None and owner != args.member:
            raise HubError(f"this {kind} credential is already enrolled to member {owner!r}; "
                           f"remove it there first (torwart-hub cards remove {owner} ...)")
        member = store.get_member(args.member)
        if member is None:
            store.add_member(args.member, args.name or "", args.email)
            print(f"member {args.member} created")
        elif args.name is not None or args.email is not None:
            store.add_member(args.member, args.name if args.name is not None else member.display_name,
                             args.email if args.email is not None else member.email)
        if owner == args.member:
            print(f"member {args.member} already has this {kind} credential ({_fingerprint(store, cred)})")
            return 0
        store.add_credential(args.member, cred, label=args.label)
        print(f"enrolled {kind} credential {_fingerprint(store, cred)} to member {args.member}")
        _rebuild(cfg, store, _member_sites(store, {args.member}, int(time.time())), int(time.time()))
    return 0


def _read_csv(path: Path, store: Store) -> list[tuple[int, str, str, str | None, str | None]]:
    """Rows (line, member, credential, name, email); HubError listing every bad line."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise HubError(f"{path}: cannot read: {exc}") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    if header[:2] != ["member_id", "credential"] or header[2:] not in ([], ["name"], ["name", "email"]):
        raise HubError(f"{path}: line 1: the header must be member_id,credential[,name[,email]]")
    rows: list[tuple[int, str, str, str | None, str | None]] = []
    errors: list[str] = []
    seen: dict[str, tuple[int, str]] = {}
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) < 2 or len(fields) > len(header):
            errors.append(f"line {line}: expected {len(header)} fields, got {len(fields)}")
            continue
        member = fields[0].strip()
        name = fields[2].strip() or None if len(fields) > 2 else None
        email = fields[3].strip() or None if len(fields) > 3 else None
        try:
            if not member or len(member) > 256:
                raise HubError("the member id is empty or longer than 256 characters")
            cred = _credential(fields[1])
            first = seen.setdefault(cred, (line, member))
            if first[1] != member:
                raise HubError(f"the credential is also on line {first[0]}, for member {first[1]!r}")
            owner = store.owner_of_credential(cred)
            if owner is not None and owner != member:
                raise HubError(f"the credential is already enrolled to member {owner!r}")
        except HubError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        rows.append((line, member, cred, name, email))
    if errors:
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise HubError(f"{path}: nothing imported:\n  " + "\n  ".join(errors[:20]) + more)
    return rows


def cmd_cards_import(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with _store(cfg) as store:
        rows = _read_csv(Path(args.file), store)
        members = {r[1]: (r[3], r[4]) for r in rows}
        new_members = [m for m in members if store.get_member(m) is None]
        for m in new_members:
            store.add_member(m, members[m][0] or "", members[m][1])
        try:
            added = store.import_credentials([(r[1], r[2]) for r in rows])
        except HubError:
            for m in new_members:  # all or nothing: take back the members made for this file
                store.remove_member(m)
            raise
        for m, (name, email) in members.items():
            old = store.get_member(m)
            if m not in new_members and old is not None and (name or email):
                store.add_member(m, name or old.display_name, email or old.email)
        print(f"imported {added} new credentials ({len(rows) - added} already enrolled) for {len(members)} "
              f"members, {len(new_members)} of them new")
        now = int(time.time())
        _rebuild(cfg, store, _member_sites(store, set(members), now), now)
    return 0


def cmd_cards_remove(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with _store(cfg) as store:
        if store.get_member(args.member) is None:
            raise HubError(f"no member {args.member!r}")
        creds = store.credentials_of(args.member)
        given = args.credential.strip()
        match = [c for c in creds if _fingerprint(store, c.credential) == given.lower()]
        if not match and ":" in given:
            cred = _credential(given)
            match = [c for c in creds if c.credential == cred]
        if not match:
            raise HubError(f"member {args.member} has no such credential (see torwart-hub cards list {args.member})")
        store.remove_credential(match[0].id)
        print(f"removed {match[0].type} credential {_fingerprint(store, match[0].credential)} of member {args.member}")
        now = int(time.time())
        _rebuild(cfg, store, _member_sites(store, {args.member}, now), now)
    return 0


def cmd_cards_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with _store(cfg) as store:
        if args.member is not None:
            one = store.get_member(args.member)
            if one is None:
                raise HubError(f"no member {args.member!r}")
            members = [one]
        else:
            members = store.members()
        rows: list[list[object]] = []
        for mb in members:
            creds = store.credentials_of(mb.id)
            for c in creds:
                rows.append([mb.id, mb.display_name, c.type, _fingerprint(store, c.credential), c.label,
                             _when(c.created_at)])
            if not creds:
                rows.append([mb.id, mb.display_name, "(none)", None, None, None])
    _table(["MEMBER", "NAME", "TYPE", "FINGERPRINT", "LABEL", "ADDED"], rows)
    return 0


def cmd_grants_add(args: argparse.Namespace) -> int:
    cfg = _load(args)
    doors = [d.strip() for d in args.doors.split(",") if d.strip()] if args.doors else None
    if not any(s.id == args.site for s in cfg.sites):
        raise HubError(f"no site {args.site!r} in {args.config}")
    with _store(cfg) as store:
        g = store.add_grant(args.member, args.site, doors, valid_from=args.valid_from, valid_until=args.until,
                            label=args.label or "")
        print(f"grant {g.id}: member {g.member_id} may open {', '.join(g.doors) if g.doors else 'every door'} "
              f"of site {g.site_id}, from {_when(g.valid_from) if g.valid_from else 'now'} until "
              f"{_when(g.valid_until) if g.valid_until else 'revoked'}")
        _rebuild(cfg, store, {args.site}, int(time.time()))
    return 0


def cmd_grants_remove(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with _store(cfg) as store:
        site = next((s.id for s in cfg.sites for g in store.grants_for_site(s.id) if g.id == args.id), None)
        if site is None or not store.remove_grant(args.id):
            raise HubError(f"no grant {args.id} (see torwart-hub grants list)")
        print(f"grant {args.id} removed")
        _rebuild(cfg, store, {site}, int(time.time()))
    return 0


def cmd_grants_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    sites = [args.site] if args.site else [s.id for s in cfg.sites]
    rows: list[list[object]] = []
    with _store(cfg) as store:
        for site in sites:
            for g in store.grants_for_site(site):
                mb = store.get_member(g.member_id)
                rows.append([g.id, g.member_id, mb.display_name if mb else None, g.site_id,
                             ",".join(g.doors) if g.doors else "(all)", _when(g.valid_from), _when(g.valid_until),
                             g.label or None])
    _table(["ID", "MEMBER", "NAME", "SITE", "DOORS", "FROM", "UNTIL", "LABEL"], rows)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import json

    cfg = _load(args)
    rows: list[list[object]] = []
    with _store(cfg) as store:
        events = store.events(site_id=args.site, type=args.type, since=args.since, until=args.until,
                              limit=args.limit)
        members: dict[str, str] = {}
        for ev in reversed(events):  # oldest first: the newest ends up at the bottom, as in a log
            doc = json.loads(ev.payload)
            who = doc.get("who")
            if isinstance(who, str) and who not in members:
                mb = store.member_by_who(who)
                members[who] = mb.id if mb else who
            details = [f"{k}={doc[k]}" for k in ("door", "room", "reason", "version", "action", "error", "reader",
                                                 "seconds") if doc.get(k) is not None]
            if isinstance(who, str):
                details.append(f"member={members[who]}")
            rows.append([_when(ev.ts), ev.site_id, ev.seq, ev.type, " ".join(details)])
    _table(["TIME", "SITE", "SEQ", "TYPE", "DETAILS"], rows)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args, check_files=True)
    with _store(cfg):
        pass
    from . import service

    return service.run(cfg)


def _site_arg(cfg: HubConfig, args: argparse.Namespace) -> None:
    if not any(s.id == args.site for s in cfg.sites):
        raise HubError(f"no site {args.site!r} in {args.config}")


def cmd_push(args: argparse.Namespace) -> int:
    cfg = _load(args, check_files=True)
    _site_arg(cfg, args)
    with _store(cfg):
        pass
    from . import control

    res = control.push(cfg, args.site, timeout=args.timeout)
    if res.ok:
        print(f"site {args.site} now holds version {res.version} (acknowledged in {res.seconds:.1f} s)")
        return 0
    print(f"site {args.site}: push of version {res.version} failed: {res.error}", file=sys.stderr)
    return 1


def _command(args: argparse.Namespace, action: str, what: str, door: str | None = None,
             seconds: int | None = None) -> int:
    cfg = _load(args, check_files=True)
    _site_arg(cfg, args)
    with _store(cfg):
        pass
    from . import control

    res = control.command(cfg, args.site, action, door=door, seconds=seconds, timeout=args.timeout)
    if res.ok:
        print(f"site {args.site}: {what} (acknowledged in {res.seconds:.1f} s)")
        return 0
    print(f"site {args.site}: {action} failed: {res.error}", file=sys.stderr)
    return 1


def cmd_unlock(args: argparse.Namespace) -> int:
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

    site = sub.add_parser("site", help="provision sites").add_subparsers(dest="site_command", required=True)
    p = add(site, "add", cmd_site_add, "provision a new site: keys, broker login, client certificate, and a "
            "site.toml bundle for its Pi", broker)
    p.add_argument("site", help="site id: a-z, 0-9, '-'")
    p.add_argument("--name", help="the site's name, e.g. 'Bürgerhaus Minheim'")
    p.add_argument("--broker-host", metavar="HOST", help="broker address as the Pi sees it (default: [mqtt] host)")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="default: 8883 with TLS, 1883 without")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                   help="TLS with a client certificate (default: as [mqtt] tls)")
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: DATA_DIR/provision/SITE)")

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

    grants = sub.add_parser("grants", help="standing grants").add_subparsers(dest="grants_command", required=True)
    p = add(grants, "add", cmd_grants_add, "let a member's credentials open doors of a site, without a booking")
    p.add_argument("member")
    p.add_argument("site")
    p.add_argument("--doors", help="comma-separated door ids (default: every door of the site)")
    p.add_argument("--from", dest="valid_from", type=_iso_time, metavar="ISO", help="start (default: now)")
    p.add_argument("--until", type=_iso_time, metavar="ISO", help="end (default: until removed)")
    p.add_argument("--label", help="e.g. 'caretaker'")
    p = add(grants, "remove", cmd_grants_remove, "remove a standing grant")
    p.add_argument("id", type=int)
    p = add(grants, "list", cmd_grants_list, "list standing grants")
    p.add_argument("--site")

    p = add(sub, "events", cmd_events, "show events sites reported (newest last)")
    p.add_argument("--site")
    p.add_argument("--type", help="e.g. access.denied")
    p.add_argument("--since", type=_iso_time, metavar="ISO")
    p.add_argument("--until", type=_iso_time, metavar="ISO")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")

    add(sub, "run", cmd_run, "run the hub: booking sync, caches, MQTT, dashboard")
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


if __name__ == "__main__":
    sys.exit(main())
