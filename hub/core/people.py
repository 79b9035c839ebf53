"""People and what they may open: members and their credentials (cards, fobs, PINs),
standing grants (caretakers, cleaners), dashboard accounts, and the event log that names
members to admins.

The acts that change what a site may open return the sites whose caches that changes;
the caller passes them on to ``rebuild`` (the command line) or ``changed`` (the running
hub), so that the caches follow. Nothing here prints or logs a credential: listings show
a keyed fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wire.creds import check_credential
from wire.errors import WireError

from ..caches import LOOK_BACK
from ..errors import HubError
from ..store import Credential, Grant, Member, StoredEvent, User, UserExists
from .audit import Auditing

#: The credential types an admin may enroll by hand (PROTOCOL.md §1).
CRED_TYPES = ("em4100", "iso14443a", "wiegand26", "wiegand34", "pin")


def parse_credential(text: str) -> str:
    """A credential string in its PROTOCOL.md §1 form (type lower case, hex upper case).
    HubError says what is wrong without repeating the credential."""
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


@dataclass(frozen=True)
class CardAdded:
    """What ``add_card`` did: the member was ``created``, or had the card ``already``;
    the credential's type and fingerprint; the sites whose caches changed."""

    kind: str
    fingerprint: str
    created: bool
    already: bool
    sites: frozenset[str]


@dataclass(frozen=True)
class CardsImported:
    added: int
    rows: int
    members: int
    new_members: int
    sites: frozenset[str]


@dataclass(frozen=True)
class CardRemoved:
    kind: str
    fingerprint: str
    sites: frozenset[str]


def _grant_detail(valid_from: int | None, valid_until: int | None, label: str) -> str | None:
    """A grant's window and label for its audit row (ISO 8601, UTC)."""
    def iso(t: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    parts = ([f"from={iso(valid_from)}"] if valid_from else []) + \
        ([f"until={iso(valid_until)}"] if valid_until else []) + ([f"label={label}"] if label else [])
    return " ".join(parts) or None


class People(Auditing):
    """The acts about members, credentials, grants and accounts (see the module's docstring)."""

    # --- members and credentials ---------------------------------------------------------------

    def fingerprint(self, credential: str) -> str:
        """A short stable tag to tell credentials apart in listings: keyed, because a bare
        hash of a 4-digit pin would give the pin away."""
        return hmac.new(self._store.hub_secret("card-fingerprint"), credential.encode(),
                        hashlib.sha256).hexdigest()[:8]

    def member(self, member_id: str) -> Member | None:
        return self._store.get_member(member_id)

    def owner_of(self, credential: str) -> str | None:
        """The member a credential is enrolled to, if any."""
        return self._store.owner_of_credential(credential)

    def member_sites(self, members: Iterable[str]) -> frozenset[str]:
        """The sites whose caches hold any of ``members`` (bookings from a day back, grants)."""
        since = int(time.time()) - LOOK_BACK
        sites: set[str] = set()
        for member in members:
            sites |= self._store.sites_for_member(member, since)
        return frozenset(sites)

    def ensure_member(self, member_id: str, name: str | None, email: str | None) -> tuple[Member, bool]:
        """Member ``member_id``, created (with ``name`` and ``email``) when new; (member, created)."""
        member = self._store.get_member(member_id)
        if member is not None:
            return member, False
        return self._store.add_member(member_id, name or "", email), True

    def add_card(self, member_id: str, credential: str, *, name: str | None = None, email: str | None = None,
                 label: str | None = None, update: bool = True) -> CardAdded:
        """Enroll ``credential`` (PROTOCOL.md §1 form) to a member, creating the member if new
        (``update``: and giving an existing one the ``name``/``email`` given). HubError when
        the credential is another member's. Recorded in the audit trail (type and
        fingerprint, never the credential)."""
        kind = credential.partition(":")[0]
        with self.audited("cards.add", member=member_id, detail=f"{kind} {self.fingerprint(credential)}") as note:
            done = self._add_card(member_id, credential, name=name, email=email, label=label, update=update)
            if done.created or done.already:
                note.add("created member" if done.created else "already enrolled")
            return done

    def _add_card(self, member_id: str, credential: str, *, name: str | None, email: str | None,
                  label: str | None, update: bool) -> CardAdded:
        kind = credential.partition(":")[0]
        owner = self._store.owner_of_credential(credential)
        if owner is not None and owner != member_id:
            raise HubError(f"this {kind} credential is already enrolled to member {owner!r}; "
                           f"remove it there first (torwart-hub cards remove {owner} ...)")
        member, created = self.ensure_member(member_id, name, email)
        if not created and update and (name is not None or email is not None):
            self._store.add_member(member_id, name if name is not None else member.display_name,
                                   email if email is not None else member.email)
        fp = self.fingerprint(credential)
        if owner == member_id:
            return CardAdded(kind, fp, created, True, frozenset())
        self._store.add_credential(member_id, credential, label=label)
        return CardAdded(kind, fp, created, False, self.member_sites([member_id]))

    def import_cards(self, rows: Sequence[tuple[str, str, str | None, str | None]]) -> CardsImported:
        """Enroll (member, credential, name, email) rows, all or nothing: members made for
        them are taken back when the credentials cannot all be enrolled (HubError). Recorded
        in the audit trail."""
        with self.audited("cards.import", detail=f"rows={len(rows)}") as note:
            done = self._import_cards(rows)
            note.add(f"added={done.added} members={done.members} new_members={done.new_members}")
            return done

    def _import_cards(self, rows: Sequence[tuple[str, str, str | None, str | None]]) -> CardsImported:
        members = {r[0]: (r[2], r[3]) for r in rows}
        new_members = [mb for mb in members if self._store.get_member(mb) is None]
        for mb in new_members:
            self._store.add_member(mb, members[mb][0] or "", members[mb][1])
        try:
            added = self._store.import_credentials([(r[0], r[1]) for r in rows])
        except HubError:
            for mb in new_members:
                self._store.remove_member(mb)
            raise
        for mb, (name, email) in members.items():
            old = self._store.get_member(mb)
            if mb not in new_members and old is not None and (name or email):
                self._store.add_member(mb, name or old.display_name, email or old.email)
        return CardsImported(added, len(rows), len(members), len(new_members), self.member_sites(members))

    def remove_card(self, member_id: str, given: str) -> CardRemoved:
        """Remove a member's credential, named by its fingerprint or as TYPE:VALUE. Recorded
        in the audit trail."""
        with self.audited("cards.remove", member=member_id) as note:
            done = self._remove_card(member_id, given)
            note.add(f"{done.kind} {done.fingerprint}")
            return done

    def _remove_card(self, member_id: str, given: str) -> CardRemoved:
        if self._store.get_member(member_id) is None:
            raise HubError(f"no member {member_id!r}")
        creds = self._store.credentials_of(member_id)
        given = given.strip()
        match = [c for c in creds if self.fingerprint(c.credential) == given.lower()]
        if not match and ":" in given:
            cred = parse_credential(given)
            match = [c for c in creds if c.credential == cred]
        if not match:
            raise HubError(f"member {member_id} has no such credential (see torwart-hub cards list {member_id})")
        self._store.remove_credential(match[0].id)
        return CardRemoved(match[0].type, self.fingerprint(match[0].credential), self.member_sites([member_id]))

    def cards(self, member_id: str | None = None) -> list[tuple[Member, list[Credential]]]:
        """Members (one, or all) and their credentials; HubError for an unknown member."""
        if member_id is not None:
            one = self._store.get_member(member_id)
            if one is None:
                raise HubError(f"no member {member_id!r}")
            members = [one]
        else:
            members = self._store.members()
        return [(mb, self._store.credentials_of(mb.id)) for mb in members]

    # --- standing grants ---------------------------------------------------------------------------

    def add_grant(self, member_id: str, site: str, doors: list[str] | None, *, valid_from: int | None,
                  valid_until: int | None, label: str) -> Grant:
        """Let a member's credentials open doors of a configured site without a booking
        (its cache changes: rebuild ``site``). Recorded in the audit trail."""
        with self.audited("grants.add", site=site, member=member_id, door=",".join(doors) if doors else None,
                          detail=_grant_detail(valid_from, valid_until, label)) as note:
            self.site(site)
            g = self._store.add_grant(member_id, site, doors, valid_from=valid_from, valid_until=valid_until,
                                      label=label)
            note.add(f"grant={g.id}")
            return g

    def remove_grant(self, grant_id: int) -> str:
        """Remove a standing grant; the site whose cache it changes. HubError if there is none.
        Recorded in the audit trail."""
        found = next(((g, s.id) for s in self.cfg.sites for g in self._store.grants_for_site(s.id)
                      if g.id == grant_id), None)
        with self.audited("grants.remove", site=found[1] if found else None,
                          member=found[0].member_id if found else None, detail=f"grant={grant_id}"):
            return self._remove_grant(grant_id)

    def _remove_grant(self, grant_id: int) -> str:
        site = next((s.id for s in self.cfg.sites for g in self._store.grants_for_site(s.id) if g.id == grant_id),
                    None)
        if site is None or not self._store.remove_grant(grant_id):
            raise HubError(f"no grant {grant_id} (see torwart-hub grants list)")
        return site

    def grants(self, site: str | None = None) -> list[tuple[Grant, Member | None]]:
        """Standing grants of ``site`` (None: every configured site) with their members."""
        sites = [site] if site else [s.id for s in self.cfg.sites]
        return [(g, self._store.get_member(g.member_id)) for s in sites for g in self._store.grants_for_site(s)]

    # --- the event log --------------------------------------------------------------------------------

    def event_log(self, *, site: str | None, type: str | None, since: float | None, until: float | None,
                  limit: int) -> list[tuple[StoredEvent, dict[str, Any], str | None]]:
        """The newest ``limit`` events matching, oldest first, each with its decoded payload
        and the id of the member it names (``who``), for admins."""
        events = self._store.events(site_id=site, type=type, since=since, until=until, limit=limit)
        members: dict[str, str] = {}
        out = []
        for ev in reversed(events):
            doc = json.loads(ev.payload)
            who = doc.get("who")
            if isinstance(who, str) and who not in members:
                mb = self._store.member_by_who(who)
                members[who] = mb.id if mb else who
            out.append((ev, doc, members[who] if isinstance(who, str) else None))
        return out

    # --- dashboard accounts ----------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        return self._store.get_user(name)

    def add_user(self, name: str, role: str, sites: list[str] | None, password_hash: str,
                 email: str | None = None) -> User:
        """Add a dashboard account (``email``: where its alerts go); HubError when the name is
        taken. Recorded in the audit trail (``users.add``, the account's name in ``detail``)."""
        where = "*" if sites is None else ",".join(sites)
        with self.audited("users.add", detail=f"user={name} role={role} sites={where}"):
            try:
                return self._store.add_user(name, role, sites, password_hash, email)
            except UserExists as exc:
                raise HubError(str(exc)) from None

    def users(self) -> tuple[list[User], dict[str, int]]:
        """The dashboard accounts, and per user its open sessions."""
        return self._store.users(), self._store.active_sessions(time.time())

    def remove_user(self, name: str) -> bool:
        """Remove an account and end its sessions; False if there was none. Recorded in the
        audit trail (refused when there was none)."""
        with self.audited("users.remove", detail=f"user={name}") as note:
            done = self._store.remove_user(name)
            if not done:
                note.outcome, note.reason = "refused", f"no user {name!r}"
            return done
