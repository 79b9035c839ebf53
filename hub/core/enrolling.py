"""Card enrollment at a site: start it, follow it, finish it (PROTOCOL.md §3 ``enroll``,
§4 ``enroll.read``; the whole story in docs/enrollment.md).

Starting records the pending enrollment (``hub.enroll.site.begin``) and sends the signed
``enroll`` command; the site acknowledges, its reader hands the next card to the hub
sealed, and whoever opens the read first (the running hub, ``on_enroll_read``, or the
command line that started it, ``enroll_at_site``) enrolls the card and pushes the caches
that hold it; the store lets only one of them enroll it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from wire import envelope
from wire import messages as m
from wire.topics import Kind

from ..caches import LOOK_BACK
from ..config import signing_key
from ..conversation import Conversation
from ..enroll import handler as enroll_handler
from ..enroll import site as at_site
from ..enroll.handler import MAX_SECONDS, EnrollError, EnrollHandler, load_enroll_key
from ..enroll.state import close_overdue, describe
from ..errors import HubError
from ..store import Enrollment
from .command import Commanding
from .errors import NoEnrollKey, NotSent
from .push import Pushing


class Enrolling(Pushing, Commanding):
    """The enrollment acts (see the module's docstring)."""

    _enroller: EnrollHandler | None

    @property
    def enroller(self) -> EnrollHandler:
        """The running hub's handler of sealed reads (with the enrollment key if it has one)."""
        if self._enroller is None:
            self._enroller = enroll_handler.for_service(self.cfg, self._store)
        return self._enroller

    def _begin(self, site: str, member_id: str, reader: str, seconds: int) -> m.Command:
        self.site(site)
        self._refuse_revoked(site)
        return at_site.begin(self._store, site, member_id, reader, seconds=seconds)

    def start_enrollment(self, site: str, member_id: str, reader: str, seconds: int) -> m.Command:
        """Record and send an enrollment at ``site`` (the running hub); the command sent.
        NoEnrollKey when this hub could not open the read, UnknownMember, EnrollError (a
        bad window or reader), NotSent (recorded as cancelled). Recorded in the audit trail."""
        with self.audited("enroll", site=site, member=member_id, detail=f"reader={reader} seconds={seconds}") as n:
            cmd = self._start_enrollment(site, member_id, reader, seconds)
            n.add(f"command={cmd.id}")
            return cmd

    def _start_enrollment(self, site: str, member_id: str, reader: str, seconds: int) -> m.Command:
        if self.enroller.key is None:
            raise NoEnrollKey("this hub has no enrollment key to open the site's read (run torwart-hub init)")
        cmd = self._begin(site, member_id, reader, seconds)
        if not self._send(self._running_link(), site, cmd):
            at_site.cancel(self._store, cmd.id, "publishing failed")
            raise NotSent("not connected to the broker")
        return cmd

    def enrollment(self, command_id: str, visible: Callable[[str], bool]) -> dict[str, Any] | None:
        """Enrollment ``command_id`` as the API shows it (``hub.enroll.state``), closed as
        expired first when nothing can come for it any more; None when there is none, or
        ``visible(site)`` says its site may not be seen."""
        row = self._store.get_enrollment(command_id)
        if row is None or not visible(row.site_id):
            return None
        return describe(self._store, close_overdue(self._store, row, time.time()))

    def enrollment_acked(self, site: str, ack: m.CommandAck) -> None:
        """``site`` acknowledged a command; if it was an enroll command, record the answer."""
        if self._store.get_enrollment(ack.id) is not None:
            self._store.ack_enrollment(ack.id, site, None if ack.ok else (ack.error or "refused"), now=time.time())

    def on_enroll_read(self, site: str, ev: m.EnrollRead) -> None:
        """The running hub ingested a sealed read: finish the enrollment if it is this
        process's to finish, and bring out the caches that now hold the card."""
        done = self.enroller.on_read(site, ev, time.time())
        if done is None or not done.sites:
            return
        versions = self.changed(done.sites)
        if site in done.sites:  # the version the dashboard waits for (hub.enroll.state)
            version = versions.get(site) or self.caches.latest_version(site)
            if version is not None:
                self._store.set_enrollment_cache(ev.command, version)

    def enroll_at_site(self, site: str, member_id: str, reader: str, *, timeout: float,
                       say: at_site.Say) -> Enrollment:
        """The command line's whole conversation: record the enrollment, send the command,
        wait for the ack and the card, enroll it and push the caches that hold it, saying
        each step; the finished enrollment, or EnrollError (nothing is enrolled then).
        Recorded in the audit trail."""
        with self.audited("enroll", site=site, member=member_id, detail=f"reader={reader}"):
            return self._enroll_at_site(site, member_id, reader, timeout=timeout, say=say)

    def _enroll_at_site(self, site: str, member_id: str, reader: str, *, timeout: float,
                        say: at_site.Say) -> Enrollment:
        if not 1 <= timeout <= MAX_SECONDS:
            raise EnrollError(f"--timeout at a site is 1 to {MAX_SECONDS} s (how long a site waits for a card at most)")
        key = load_enroll_key(self.cfg)
        seconds = int(timeout)
        cmd = self._begin(site, member_id, reader, seconds)
        with Conversation(self.cfg, "enroll") as talk:
            try:
                talk.connect(at_site.ACK_TIMEOUT)
            except HubError:
                at_site.cancel(self._store, cmd.id, "the broker could not be reached")
                raise
            talk.listen(site, at_site.LISTEN)
            if not self._send(talk.link, site, cmd):
                at_site.cancel(self._store, cmd.id, "publishing failed")
                raise EnrollError("publishing the command failed: the broker connection dropped")
            say(f"command sent: enroll at reader {reader} of site {site} (command {cmd.id[:8]})")
            at_site.wait_ack(self._store, talk, site, cmd.id, reader=reader, seconds=seconds, say=say)
            outcome = at_site.wait_read(self._store, key, talk, site, cmd.id, reader=reader,
                                        deadline=time.monotonic() + seconds + 5)
            done = at_site.report(outcome, say)
            self._push_enrolled(talk, site, done.member_id, by_hub=not outcome.mine, say=say)
            return done

    def _push_enrolled(self, talk: Conversation, site: str, member_id: str, *, by_hub: bool,
                       say: at_site.Say) -> None:
        """Bring every site whose cache holds the member to the version with the new card.

        When the running hub enrolled the card (``by_hub``), it publishes that version itself:
        the CLI waits a moment for it (a cache publication or acknowledgement of that version)
        rather than racing it with a full cache the site would refuse as stale."""
        now = int(time.time())
        configured = {s.id for s in self.cfg.sites} - self.blocked_sites()  # nothing for revoked sites
        sites = sorted(self._store.sites_for_member(member_id, now - LOOK_BACK) & configured)
        if site not in sites:
            say(f"site {site}: member {member_id} has no booking or standing grant here, so the card opens "
                "no door here yet")
        keys = envelope.trusted_keys(signing_key(self.cfg).public_key())
        for s in sites:
            if s != site:
                talk.listen(s, (Kind.CACHE, Kind.CACHE_DELTA, Kind.CACHE_ACK))
        for s in sites:
            self.caches.rebuild(s, now)
            latest = self.caches.latest_version(s)
            assert latest is not None
            if by_hub and at_site.published(self._store, talk, keys, s, version=latest,
                                             deadline=time.monotonic() + at_site.HUB_PUBLISH_GRACE):
                say(f"cache version {latest} pushed to site {s} (by the running hub)")
            else:
                try:
                    full = self._publish_full(talk, s)
                except NotSent:
                    raise EnrollError(f"the card is enrolled, but publishing site {s}'s cache failed "
                                      "(the running hub publishes it; or run torwart-hub push)") from None
                say(f"cache version {full.version} pushed to site {s}")
            ack = self._cache_acked(talk, s, latest, time.monotonic() + at_site.CACHE_ACK_TIMEOUT, newer=True)
            if ack is None:
                say(f"site {s} has not acknowledged version {latest} within {at_site.CACHE_ACK_TIMEOUT:.0f} s; "
                    "it applies it when it is online (torwart-hub sites shows its version)")
            elif ack.ok or ack.error == "stale_version":  # stale: it holds this version or a newer one already
                say(f"site {s} holds {ack.version if ack.ok else latest}")
            else:
                raise EnrollError(f"the card is enrolled, but site {s} refused cache version {latest}: {ack.error}")
