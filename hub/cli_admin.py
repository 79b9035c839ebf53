"""``torwart-hub`` commands about people and state: sites, cards, grants, events."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import time
from pathlib import Path

from .cli_common import _ago, _load, _rebuild, _store, _table, _when
from .errors import HubError
from .store import FeedbackItem, SiteState, Store

log = logging.getLogger("hub")


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


def _event_notes(store: Store, st: SiteState) -> list[str]:
    """Lines under the sites table about a site's event streams and odd events."""
    from .store import short, stream_notes

    n = stream_notes(st.stream, store.event_streams(st.site_id))
    out = []
    if n["reset_at"] is not None:
        out.append(f"{st.site_id}: site was reset at {_when(n['reset_at'])} (new stream {short(n['stream'])}); "
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
    cfg = _load(args)
    now = time.time()
    rows: list[list[object]] = []
    notes: list[str] = []
    with _store(cfg) as store:
        states = {s.site_id: s for s in store.site_states()}
        refusals = store.site_refusals()
        refused: dict[str, int] = {}
        for r in refusals:
            refused[r.site_id] = refused.get(r.site_id, 0) + r.count
        backlog = store.feedback_backlog()
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
                         events, None if st is None else st.outbox_pending, refused.get(site.id, 0),
                         _backlog_counts(backlog, site.id)])
            if st is not None:
                notes += _event_notes(store, st)
        _table(["SITE", "NAME", "STATE", "CACHE AT HUB", "CACHE AT SITE", "LAST SEEN", "SEQ/ACKED", "OUTBOX",
                "REFUSED", "TO PLATFORM"], rows)
        for note in notes:
            print(note)
        sync = store.get_sync_state(cfg.booking.adapter)
    if sync.last_ok_at is None and sync.failures == 0:
        health = "never run"
    elif sync.failures:
        health = (f"FAILING, {sync.failures} in a row since {_when(sync.last_error_at)}; last ok "
                  f"{_ago(sync.last_ok_at, now)}; last error: {sync.last_error}")
    else:
        health = f"ok, last sync {_ago(sync.last_ok_at, now)}"
    if refusals:
        print("\nmessages refused from sites (too large, over a room's capacity, unknown room, "
              "a cache version the hub never issued):")
        _table(["SITE", "REFUSED", "COUNT", "LAST", "LAST REASON"],
               [[r.site_id, r.kind, r.count, _ago(r.last_at, now), r.last_reason] for r in refusals])
    print(f"\nbooking sync ({cfg.booking.adapter}): {health}")
    if backlog:
        print(f"check-ins and releases not delivered to the platform: {len(backlog)}")
        for item in backlog[:BACKLOG_SHOWN]:
            what = "check-in" if item.kind == "check_in" else "release"
            if item.state == "failed":
                how = f"FAILED for good {_ago(item.done_at, now)}"
            else:
                how = f"pending (tried {item.attempts} times, next try {_ago(item.next_try, now)})"
            print(f"  {what} of booking {item.booking_id} ({item.site_id}): {how}"
                  + (f": {item.last_error}" if item.last_error else ""))
        if len(backlog) > BACKLOG_SHOWN:
            print(f"  ... and {len(backlog) - BACKLOG_SHOWN} more")
    return 0


BACKLOG_SHOWN = 20


def _backlog_counts(backlog: list[FeedbackItem], site: str) -> str | None:
    pending = sum(1 for i in backlog if i.site_id == site and i.state == "pending")
    failed = sum(1 for i in backlog if i.site_id == site and i.state == "failed")
    parts = ([f"{pending} pending"] if pending else []) + ([f"{failed} failed"] if failed else [])
    return ", ".join(parts) or None


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
            if ev.stream:  # seqs count per stream; a reinstalled site has several
                details.append(f"stream={ev.stream[:8]}")
            rows.append([_when(ev.ts), ev.site_id, ev.seq, ev.type, " ".join(details)])
    _table(["TIME", "SITE", "SEQ", "TYPE", "DETAILS"], rows)
    return 0
