"""A member's data: access (GDPR Art. 15, ``export_member``) and erasure (Art. 17,
``erase_member``, ``erase_and_wait``).

The export holds everything the hub keeps about a member: the member row (name, e-mail,
pseudonym), credentials by type and keyed fingerprint (a PIN only as set), standing
grants, the hub's copies of their bookings (a booking's PIN only as set), card
enrollments, the stored events that name their pseudonym (all within retention: older
ones are purged) and the sites whose latest cache holds entries for them. Never a raw
credential, key or hash.

Erasure deletes the member, their credentials (PINs included), grants, enrollments and
the hub's copies of their bookings in one store transaction (``Store.erase_member``),
then rebuilds the caches of every site that held them, drops the older rows of their
cache change logs (which name the member's entries; a site further behind than the last
version gets a full instead of a delta) and publishes each new version as the retained
cache.full (replacing the retained full that named them). The command line
waits for the sites' acknowledgements; a site that does not answer (offline) gets the
new version when it reconnects, from the retained message. The events stay, under the
pseudonym only, and are purged with retention like every other event.

Bookings: the booking platform owns them. The hub drops its copies (they link the
member's id to times and rooms and may hold a booking PIN); should the platform still
list the bookings, the next sync brings them back, so the member is to be erased at the
platform too (docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from ..conversation import Conversation
from ..errors import HubError
from .people import People
from .push import ACKS, Pushing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemberLine:
    """One member as the dashboard's member list shows it: id, name, e-mail, how many
    credentials (PINs not counted) and whether a PIN is set."""

    id: str
    name: str
    email: str | None
    credentials: int
    pin: bool


@dataclass(frozen=True)
class SiteAck:
    """What one site did with the cache that no longer holds an erased member: ``acked``
    (its version ``version`` or a newer one is applied), or not (``error``: the site's
    refusal, or None when it did not answer within the timeout)."""

    site: str
    version: int | None
    acked: bool
    error: str | None = None


@dataclass(frozen=True)
class Erasure:
    """What ``erase_member`` / ``erase_and_wait`` did: rows deleted per table, the sites
    whose caches changed with their new versions, and (waiting) each site's answer."""

    member: str
    deleted: dict[str, int]
    versions: dict[str, int | None]
    acks: tuple[SiteAck, ...] = ()


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Privacy(Pushing, People):
    """Access and erasure of a member's data (see the module's docstring)."""

    def _cache_sites_of(self, who: str) -> dict[str, int]:
        """Configured site → entries naming ``who`` in its latest cache (sites without any
        left out)."""
        out: dict[str, int] = {}
        for s in self.cfg.sites:
            snap = self._store.cache_snapshot(s.id)
            if snap is None:
                continue
            n = 0
            for entry in snap[1].values():
                try:
                    n += msgspec.json.decode(entry, type=m.Entry).who == who
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
            if n:
                out[s.id] = n
        return out

    def member_list(self, query: str = "", *, limit: int = 500) -> tuple[list[MemberLine], int]:
        """Members whose id or name contains ``query`` (case-insensitive; all for ""), by id,
        at most ``limit`` of them, and how many matched in all. Two reads, whatever the count."""
        q = query.strip().casefold()
        found = [mb for mb in self._store.members()
                 if not q or q in mb.id.casefold() or q in mb.display_name.casefold()]
        shown = found[:limit]
        creds = self._store.credentials_for_members(mb.id for mb in shown)
        return [MemberLine(mb.id, mb.display_name, mb.email,
                           sum(not c.startswith("pin:") for c in creds.get(mb.id, ())),
                           any(c.startswith("pin:") for c in creds.get(mb.id, ()))) for mb in shown], len(found)

    def export_member(self, member_id: str) -> dict[str, Any]:
        """Everything the hub holds about ``member_id`` as a JSON-ready dict (see the
        module's docstring); HubError for an unknown member. Recorded in the audit trail."""
        with self.audited("members.export", member=member_id):
            return self._export_member(member_id)

    def _export_member(self, member_id: str) -> dict[str, Any]:
        mb = self._store.get_member(member_id)
        if mb is None:
            raise HubError(f"no member {member_id!r}")
        creds = self._store.credentials_of(member_id)
        pins = [c for c in creds if c.type == "pin"]
        events = []
        for ev in self._store.events_of_who(mb.who):
            try:
                payload = json.loads(ev.payload)
            except ValueError:
                payload = None
            events.append({"site": ev.site_id, "seq": ev.seq, "type": ev.type, "time": _iso(ev.ts),
                           "received": _iso(ev.received_at), "event": payload})
        return {
            "member": {"id": mb.id, "name": mb.display_name, "email": mb.email, "pseudonym": mb.who,
                       "created": _iso(mb.created_at)},
            "credentials": [{"type": c.type, "fingerprint": self.fingerprint(c.credential), "label": c.label,
                             "added": _iso(c.created_at)} for c in creds if c.type != "pin"],
            "pin": "set" if pins else "not set",
            "grants": [{"id": g.id, "site": g.site_id, "doors": list(g.doors) if g.doors else "all",
                        "from": _iso(g.valid_from), "until": _iso(g.valid_until), "label": g.label}
                       for g in self._store.grants_of(member_id)],
            "bookings": [{"id": b.id, "resource": b.resource_id, "start": _iso(b.start), "end": _iso(b.end),
                          "status": b.status, "pin": "set" if b.pin else "not set", "source": b.source}
                         for b in self._store.member_bookings(member_id)],
            "enrollments": [{"site": e.site_id, "reader": e.reader, "started": _iso(e.created_at),
                             "status": e.status, "done": _iso(e.done_at)}
                            for e in self._store.member_enrollments(member_id)],
            "events": events,
            "events_retention_days": self.cfg.hub.retention_days,
            "site_caches": [{"site": site, "entries": n} for site, n in self._cache_sites_of(mb.who).items()],
        }

    def erase_member(self, member_id: str) -> Erasure:
        """Delete the member's data (one transaction) and rebuild the caches of the sites
        that held them; HubError, nothing changed, for an unknown member. The running hub
        publishes each new version as the retained full; the command line only records it
        (``erase_and_wait`` publishes and waits). Recorded in the audit trail."""
        with self.audited("members.erase", member=member_id) as note:
            done = self._erase_member(member_id)
            note.add("sites=" + (",".join(done.versions) or "-"))
            return done

    def _erase_member(self, member_id: str) -> Erasure:
        mb = self._store.get_member(member_id)
        if mb is None:
            raise HubError(f"no member {member_id!r}")
        # A revoked or removed site's cache is rebuilt only when it holds the member (the
        # store's copy must not keep them); nothing is published for it.
        blocked = self.blocked_sites()
        sites = (set(self.member_sites([member_id])) - blocked) | set(self._cache_sites_of(mb.who))
        deleted = self._store.erase_member(member_id)
        if deleted is None:  # erased in between by another process
            raise HubError(f"no member {member_id!r}")
        now = int(time.time())
        versions: dict[str, int | None] = {}
        for site in [s.id for s in self.cfg.sites if s.id in sites]:
            self.caches.rebuild(site, now)
            # The change log's older rows hold the member's entries: keep only the newest
            # (its removals name entry ids only). A site further behind gets a full.
            self._store.prune_cache_log(site, keep_last=1, hard_max=1)
            versions[site] = (self.push(site) if self.link is not None and site not in blocked
                              else self.caches.latest_version(site))
        return Erasure(member_id, deleted, versions)

    def erase_and_wait(self, member_id: str, *, timeout: float = 30.0) -> Erasure:
        """``erase_member``, then publish each changed site's new cache as the retained full
        and wait (up to ``timeout`` seconds in all) until every one of them acknowledged it
        (or a newer version). When the broker cannot be reached the erasure stands and
        each site's answer says the cache was not published (the running hub brings it
        out). Recorded in the audit trail, with the sites that did not acknowledge."""
        with self.audited("members.erase", member=member_id) as note:
            res = self._erase_and_wait(member_id, timeout=timeout)
            missing = [a.site for a in res.acks if not a.acked]
            note.add("sites=" + (",".join(res.versions) or "-"))
            if missing:
                note.failed("erased; not acknowledged by " + ", ".join(missing))
            return res

    def _erase_and_wait(self, member_id: str, *, timeout: float) -> Erasure:
        done = self.erase_member(member_id)
        blocked = self.blocked_sites()
        waiting = {site: v for site, v in done.versions.items() if v is not None and site not in blocked}
        acks: dict[str, SiteAck] = {site: SiteAck(site, v, False, "site is revoked: nothing is sent to it")
                                    for site, v in done.versions.items() if site in blocked}
        if waiting:
            try:
                self._publish_and_wait(waiting, acks, timeout)
            except HubError as exc:  # the broker: the erasure stands, the running hub publishes
                log.warning("erasure done, but the new caches were not published: %s", exc)
                for site, version in waiting.items():
                    acks[site] = SiteAck(site, version, False,
                                         f"not published ({exc}); the running hub publishes it")
                waiting.clear()
        for site, version in waiting.items():
            acks[site] = SiteAck(site, version, False, None)
        for site, v in done.versions.items():
            acks.setdefault(site, SiteAck(site, v, False, "no cache built (is the site configured?)"))
        return Erasure(done.member, done.deleted, done.versions, tuple(acks[s] for s in done.versions))

    def _publish_and_wait(self, waiting: dict[str, int], acks: dict[str, SiteAck], timeout: float) -> None:
        """Publish the latest full of each site of ``waiting`` (site → version) over a
        conversation of its own and move each site that answers from ``waiting`` to
        ``acks``, until none is left or ``timeout`` seconds passed; HubError when the
        broker cannot be reached or the publishing failed."""
        with Conversation(self.cfg, "cli") as talk:
            talk.connect(min(timeout, 15))
            for site in waiting:
                talk.listen(site, ACKS)
            deadline = time.monotonic() + timeout
            for site in waiting:
                waiting[site] = self._publish_full(talk, site).version
            while waiting and time.monotonic() < deadline:
                msg = talk.next(deadline)
                if msg is None or msg[1] is not Kind.CACHE_ACK or msg[0] not in waiting:
                    continue
                try:
                    ack = m.decode(msg[2], m.CacheAck)
                except WireError:
                    continue
                site, version = msg[0], waiting[msg[0]]
                if ack.version is None or ack.version < version:
                    continue  # an answer to an older cache
                ok = ack.ok or ack.error == "stale_version"  # stale: it holds this version or newer
                if ack.ok:
                    self._store.update_site_state(site, {"cache_version": ack.version})
                acks[site] = SiteAck(site, version, ok, None if ok else ack.error)
                del waiting[site]
