"""``torwart-hub`` commands about people and state: sites, cards, grants, events. Parsing
and output only: the acts are the application core's (``hub.core.Hub``)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from ..core import Hub, parse_credential
from ..core.fleet import CertLine
from ..errors import HubError
from ..store import FeedbackItem, SiteState
from .common import ago, load, open_cli_hub, rebuild, table, when

log = logging.getLogger("hub")


def _event_notes(st: SiteState, n: dict[str, Any]) -> list[str]:
    """Lines under the sites table about a site's event streams (``n``: its stream notes)
    and odd events."""
    from ..store import short

    out = []
    if n["reset_at"] is not None:
        out.append(f"{st.site_id}: site was reset at {when(n['reset_at'])} (new stream {short(n['stream'])}); "
                   f"previous stream {short(n['previous'])} acked up to {n['previous_acked']}")
    elif n["continues_after"] is not None:
        out.append(f"{st.site_id}: stream {short(n['stream'])} continues the site's numbering after seq "
                   f"{n['continues_after']} (outbox upgraded)")
    if st.unknown_types:
        out.append(f"{st.site_id}: {st.unknown_types} events of types this hub does not know, stored as they came")
    if st.quarantined:
        out.append(f"{st.site_id}: {st.quarantined} messages on the event topic were not events; kept aside "
                   "(quarantined)")
    return out


# --- commands -----------------------------------------------------------------------------------


def cmd_sites(args: argparse.Namespace) -> int:
    cfg = load(args)
    now = time.time()
    rows: list[list[object]] = []
    notes: list[str] = []
    with open_cli_hub(args, cfg) as hub:
        view = hub.overview()
        certs = hub.cert_lines(now)
    refusals, backlog, sync = view.refusals, view.backlog, view.sync
    refused: dict[str, int] = {}
    for r in refusals:
        refused[r.site_id] = refused.get(r.site_id, 0) + r.count
    for line in view.sites:
        site, st, cache = line.site, line.state, line.cache
        if st is None or st.since is None:
            state = "never seen"
        else:
            state = f"{'online' if st.online else 'offline'} since {when(st.since)}"
        built = f"v{cache.version} {cache.n_entries} entries, {ago(cache.built_at, now)}" if cache else "none"
        applied = None if st is None or st.cache_version is None else (
            f"v{st.cache_version}" + (" (latest)" if cache and st.cache_version == cache.version else "")
            + (f", expires {ago(st.cache_expires_at, now)}" if st.cache_expires_at else ""))
        events = None if st is None else (f"{st.max_seq}/{st.acked_upto}"
                                          + (f", {len(st.gaps)} gaps" if st.gaps else ""))
        rows.append([site.id, site.name, state, (st.software or None) if st else None, _short_stream(st),
                     built, applied, ago(st.last_seen if st else None, now),
                     events, None if st is None else st.outbox_pending, refused.get(site.id, 0),
                     _cert_cell(certs[site.id]), _backlog_counts(backlog, site.id)])
        notes += _cert_notes(certs[site.id], now)
        if st is not None and line.streams is not None:
            notes += _event_notes(st, line.streams)
    table(["SITE", "NAME", "STATE", "SOFTWARE", "STREAM", "CACHE AT HUB", "CACHE AT SITE", "LAST SEEN", "SEQ/ACKED",
           "OUTBOX", "REFUSED", "CERT UNTIL", "TO PLATFORM"], rows)
    for note in notes:
        print(note)
    if sync.last_ok_at is None and sync.failures == 0:
        health = "never run"
    elif sync.failures:
        health = (f"FAILING, {sync.failures} in a row since {when(sync.last_error_at)}; last ok "
                  f"{ago(sync.last_ok_at, now)}; last error: {sync.last_error}")
    else:
        health = f"ok, last sync {ago(sync.last_ok_at, now)}"
    if refusals:
        print("\nmessages refused from sites (too large, over a room's capacity, unknown room, "
              "a cache version the hub never issued):")
        table(["SITE", "REFUSED", "COUNT", "LAST", "LAST REASON"],
               [[r.site_id, r.kind, r.count, ago(r.last_at, now), r.last_reason] for r in refusals])
    print(f"\nbooking sync ({cfg.booking.adapter}): {health}")
    if backlog:
        print(f"check-ins and releases not delivered to the platform: {len(backlog)}")
        for item in backlog[:BACKLOG_SHOWN]:
            what = "check-in" if item.kind == "check_in" else "release"
            if item.state == "failed":
                how = f"FAILED for good {ago(item.done_at, now)}"
            else:
                how = f"pending (tried {item.attempts} times, next try {ago(item.next_try, now)})"
            print(f"  {what} of booking {item.booking_id} ({item.site_id}): {how}"
                  + (f": {item.last_error}" if item.last_error else ""))
        if len(backlog) > BACKLOG_SHOWN:
            print(f"  ... and {len(backlog) - BACKLOG_SHOWN} more")
    return 0


BACKLOG_SHOWN = 20


def _short_stream(st: SiteState | None) -> str | None:
    """The site's current event stream, shortened: as its last Status names it, else the
    stream of its newest events (``legacy``: a site from before streams)."""
    import json

    from ..store import short

    if st is None or st.since is None:
        return None
    try:
        said = json.loads(st.status or "{}").get("stream")
    except (ValueError, AttributeError):
        said = None
    return short(said if isinstance(said, str) and said else st.stream)
def _cert_cell(c: CertLine) -> str | None:
    if c.state != "active":
        return c.state.upper()
    return None if c.not_after is None else when(c.not_after)


def _cert_notes(c: CertLine, now: float) -> list[str]:
    """A warning for a certificate that ends within 30 days (or has ended)."""
    if not c.expiring or c.not_after is None:
        return []
    if c.not_after <= now:
        return [f"{c.site_id}: its certificate EXPIRED {ago(c.not_after, now)}: the site cannot connect; "
                f"give it a new join code (torwart-hub site join-code {c.site_id})"]
    return [f"{c.site_id}: its certificate expires {ago(c.not_after, now)} ({when(c.not_after)}); the site "
            "renews it itself when a third of its lifetime is left: is it online, does its [hub] url reach the hub?"]


def _backlog_counts(backlog: list[FeedbackItem], site: str) -> str | None:
    pending = sum(1 for i in backlog if i.site_id == site and i.state == "pending")
    failed = sum(1 for i in backlog if i.site_id == site and i.state == "failed")
    parts = ([f"{pending} pending"] if pending else []) + ([f"{failed} failed"] if failed else [])
    return ", ".join(parts) or None


def cmd_cards_add(args: argparse.Namespace) -> int:
    cfg = load(args)
    cred = parse_credential(args.credential)
    with open_cli_hub(args, cfg) as hub:
        added = hub.add_card(args.member, cred, name=args.name, email=args.email, label=args.label)
        if added.created:
            print(f"member {args.member} created")
        if added.already:
            print(f"member {args.member} already has this {added.kind} credential ({added.fingerprint})")
            return 0
        print(f"enrolled {added.kind} credential {added.fingerprint} to member {args.member}")
        rebuild(hub, added.sites)
    return 0


def _read_csv(path: Path, hub: Hub) -> list[tuple[int, str, str, str | None, str | None]]:
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
            cred = parse_credential(fields[1])
            first = seen.setdefault(cred, (line, member))
            if first[1] != member:
                raise HubError(f"the credential is also on line {first[0]}, for member {first[1]!r}")
            owner = hub.owner_of(cred)
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
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        rows = _read_csv(Path(args.file), hub)
        done = hub.import_cards([(r[1], r[2], r[3], r[4]) for r in rows])
        print(f"imported {done.added} new credentials ({done.rows - done.added} already enrolled) for {done.members} "
              f"members, {done.new_members} of them new")
        rebuild(hub, done.sites)
    return 0


def cmd_cards_remove(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        removed = hub.remove_card(args.member, args.credential)
        print(f"removed {removed.kind} credential {removed.fingerprint} of member {args.member}")
        rebuild(hub, removed.sites)
    return 0


def cmd_cards_list(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        rows: list[list[object]] = []
        for mb, creds in hub.cards(args.member):
            for c in creds:
                rows.append([mb.id, mb.display_name, c.type, hub.fingerprint(c.credential), c.label,
                             when(c.created_at)])
            if not creds:
                rows.append([mb.id, mb.display_name, "(none)", None, None, None])
    table(["MEMBER", "NAME", "TYPE", "FINGERPRINT", "LABEL", "ADDED"], rows)
    return 0


def cmd_grants_add(args: argparse.Namespace) -> int:
    cfg = load(args)
    doors = [d.strip() for d in args.doors.split(",") if d.strip()] if args.doors else None
    with open_cli_hub(args, cfg) as hub:
        g = hub.add_grant(args.member, args.site, doors, valid_from=args.valid_from, valid_until=args.until,
                          label=args.label or "")
        print(f"grant {g.id}: member {g.member_id} may open {', '.join(g.doors) if g.doors else 'every door'} "
              f"of site {g.site_id}, from {when(g.valid_from) if g.valid_from else 'now'} until "
              f"{when(g.valid_until) if g.valid_until else 'revoked'}")
        rebuild(hub, {args.site})
    return 0


def cmd_grants_remove(args: argparse.Namespace) -> int:
    cfg = load(args)
    with open_cli_hub(args, cfg) as hub:
        site = hub.remove_grant(args.id)
        print(f"grant {args.id} removed")
        rebuild(hub, {site})
    return 0


def cmd_grants_list(args: argparse.Namespace) -> int:
    cfg = load(args)
    rows: list[list[object]] = []
    with open_cli_hub(args, cfg) as hub:
        for g, mb in hub.grants(args.site):
            rows.append([g.id, g.member_id, mb.display_name if mb else None, g.site_id,
                         ",".join(g.doors) if g.doors else "(all)", when(g.valid_from), when(g.valid_until),
                         g.label or None])
    table(["ID", "MEMBER", "NAME", "SITE", "DOORS", "FROM", "UNTIL", "LABEL"], rows)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    cfg = load(args)
    rows: list[list[object]] = []
    if not args.csv and (args.excel or args.door):
        raise HubError("--excel and --door go with --csv")
    with open_cli_hub(args, cfg) as hub:
        if args.csv:
            from .export import events_csv

            return events_csv(args, hub)
        log_ = hub.event_log(site=args.site, type=args.type, since=args.since, until=args.until,
                             limit=50 if args.limit is None else args.limit)
    for ev, doc, member in log_:  # oldest first: the newest ends up at the bottom, as in a log
        details = [f"{k}={doc[k]}" for k in ("door", "room", "reason", "version", "action", "error", "reader",
                                             "seconds") if doc.get(k) is not None]
        if member is not None:
            details.append(f"member={member}")
        if ev.stream:  # seqs count per stream; a reinstalled site has several
            details.append(f"stream={ev.stream[:8]}")
        rows.append([when(ev.ts), ev.site_id, ev.seq, ev.type, " ".join(details)])
    table(["TIME", "SITE", "SEQ", "TYPE", "DETAILS"], rows)
    return 0
