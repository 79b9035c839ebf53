"""Enrollment at a site, the hub CLI's side of the conversation (``torwart-hub cards enroll
--site S --reader R``): record the pending enrollment, send the signed ``enroll`` command,
wait for the site's acknowledgement and for its sealed ``enroll.read``, open it, enroll
the card, push the caches that now hold it and wait until the sites hold them.

Each step is reported through ``say`` as it happens. A running hub sees the same event
and may finish the enrollment first; the store lets only one of them enroll the card and
the other reports what happened. Nothing here logs or prints the credential string.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wire import envelope
from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from . import commands
from .caches import LOOK_BACK, CacheManager
from .config import HubConfig, signing_key
from .enroll import DELIVERY_GRACE, MAX_SECONDS, EnrollError, EnrollHandler, ReadOutcome, load_enroll_key
from .link import HubLink
from .store import Enrollment, Store

log = logging.getLogger(__name__)

#: How long the site has to acknowledge the command (it is online, or it is not).
ACK_TIMEOUT = 15.0
#: How long a site has to acknowledge a pushed cache.
CACHE_ACK_TIMEOUT = 20.0
#: When the running hub enrolled the card, it publishes the new cache itself; this long is
#: given to it before the CLI publishes the cache on its own.
HUB_PUBLISH_GRACE = 3.0
#: When the running hub handled the read, the CLI waits this long for its own copy of it.
SHOW_GRACE = 2.0

Say = Callable[[str], None]
Msg = tuple[str, Kind, bytes]


class _Inbox:
    """Messages of the sites this conversation subscribed to, handed to the waiting thread."""

    def __init__(self) -> None:
        self.q: queue.Queue[Msg] = queue.Queue()
        self.held: list[Msg] = []

    def link_up(self) -> None:
        """Nothing to do on (re)connect: this short-lived conversation only waits for replies."""

    def site_message(self, site: str, kind: Kind, door: str | None, payload: bytes) -> None:
        self.q.put((site, kind, payload))

    def next(self, deadline: float) -> Msg | None:
        if self.held:
            return self.held.pop(0)
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return self.q.get(timeout=min(left, 0.5))
        except queue.Empty:
            return None


def enroll_at_site(cfg: HubConfig, store: Store, site: str, member_id: str, reader: str, *,
                   timeout: float, say: Say) -> Enrollment:
    """Run the whole conversation; return the finished enrollment (status ``enrolled``) or
    raise EnrollError saying what went wrong (nothing is enrolled then)."""
    if not 1 <= timeout <= MAX_SECONDS:
        raise EnrollError(f"--timeout at a site is 1 to {MAX_SECONDS} s (how long a site waits for a card at most)")
    key = load_enroll_key(cfg)
    seconds = int(timeout)
    cmd = begin(cfg, store, site, member_id, reader, seconds=seconds)
    inbox = _Inbox()
    link = HubLink(cfg.mqtt, inbox, client_id=f"{cfg.mqtt.client_id}-enroll-{uuid.uuid4().hex[:8]}",
                   persistent=False, subscribe=())
    link.start()
    try:
        if not link.wait_connected(ACK_TIMEOUT):
            _cancel(store, cmd.id, "the broker could not be reached")
            raise EnrollError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.effective_port}"
                              + (f" ({link.refusal})" if link.refusal else ""))
        link.subscribe_site(site, (Kind.COMMAND_ACK, Kind.EVENT, Kind.CACHE_ACK, Kind.CACHE, Kind.CACHE_DELTA))
        if not link.publish_command(site, cmd, envelope.sign(cmd, signing_key(cfg))):
            _cancel(store, cmd.id, "publishing failed")
            raise EnrollError("publishing the command failed: the broker connection dropped")
        say(f"command sent: enroll at reader {reader} of site {site} (command {cmd.id[:8]})")
        _wait_ack(store, inbox, site, cmd.id, reader=reader, seconds=seconds, say=say)
        outcome = _wait_read(store, EnrollHandler(store, key), inbox, site, cmd.id, reader=reader,
                             deadline=time.monotonic() + seconds + 5)
        done = _report(outcome, say)
        _push_all(cfg, store, link, inbox, site, member_id=done.member_id, by_hub=not outcome.mine, say=say)
        return done
    finally:
        link.stop()


def begin(cfg: HubConfig, store: Store, site: str, member_id: str, reader: str, *, seconds: int) -> m.Command:
    """Check the request, build the ``enroll`` command and record the pending enrollment
    (before the command goes out: whichever process sees the read then knows the member).
    The CLI (above) and the dashboard (``hub.dashboard.enroll``) start enrollments here.
    EnrollError when the site is unknown, the window is out of range or the command is
    malformed; UnknownMember when there is no such member."""
    if not any(s.id == site for s in cfg.sites):
        raise EnrollError(f"no site {site!r} in the configuration")
    if not 1 <= seconds <= MAX_SECONDS:
        raise EnrollError(f"seconds at a site is 1 to {MAX_SECONDS} (how long a site waits for a card at most)")
    try:
        cmd = commands.build(site, "enroll", reader=reader, seconds=seconds)
    except ValueError as exc:
        raise EnrollError(str(exc)) from None
    store.add_enrollment(cmd.id, site, member_id, reader, created_at=cmd.issued_at,
                         expires_at=cmd.expires_at + seconds + DELIVERY_GRACE, seconds=seconds)
    return cmd


def _cancel(store: Store, command_id: str, why: str) -> Enrollment | None:
    return store.close_enrollment(command_id, "cancelled", why, now=time.time())


def _wait_ack(store: Store, inbox: _Inbox, site: str, command_id: str, *, reader: str, seconds: int,
              say: Say) -> None:
    deadline = time.monotonic() + ACK_TIMEOUT
    early: list[Msg] = []  # e.g. a card presented at once: its event may overtake the ack here
    while time.monotonic() < deadline:
        msg = inbox.next(deadline)
        if msg is None:
            continue
        if msg[1] is not Kind.COMMAND_ACK:
            early.append(msg)
            continue
        try:
            ack = m.decode(msg[2], m.CommandAck)
        except WireError:
            continue
        if ack.id != command_id:
            continue
        if ack.ok:
            say(f"site acknowledged: waiting for a card at {reader} ({seconds} s)")
            inbox.held.extend(early)
            return
        _cancel(store, command_id, f"refused by the site: {ack.error}")
        hint = (" (does the site have that reader, and [hub] enroll_public_key in its site.toml?)"
                if ack.error == "malformed" else "")
        raise EnrollError(f"site {site} refused the enroll command: {ack.error}{hint}; nothing enrolled")
    _cancel(store, command_id, "no acknowledgement from the site")
    raise EnrollError(f"site {site} did not acknowledge the command within {ACK_TIMEOUT:.0f} s "
                      "(is it online? see torwart-hub sites); nothing enrolled")


def _wait_read(store: Store, handler: EnrollHandler, inbox: _Inbox, site: str, command_id: str, *, reader: str,
               deadline: float) -> ReadOutcome:
    kept: list[Msg] = []  # cache publications and acks: what comes after the read needs them
    try:
        return _read_loop(store, handler, inbox, site, command_id, reader=reader, deadline=deadline, kept=kept)
    finally:
        inbox.held.extend(kept)


def _read_loop(store: Store, handler: EnrollHandler, inbox: _Inbox, site: str, command_id: str, *, reader: str,
               deadline: float, kept: list[Msg]) -> ReadOutcome:
    handled_elsewhere: tuple[Enrollment, float] | None = None
    while True:
        msg = inbox.next(deadline if handled_elsewhere is None else handled_elsewhere[1])
        if msg is not None and msg[1] is not Kind.EVENT:
            kept.append(msg)
        elif msg is not None:
            try:
                ev = m.decode(msg[2], m.AnyEvent)
            except WireError:
                continue
            if isinstance(ev, m.EnrollRead) and ev.command == command_id and ev.site == site:
                outcome = handler.on_read(site, ev, time.time())
                if outcome is not None:
                    return outcome
            continue
        if handled_elsewhere is None:
            row = store.get_enrollment(command_id)
            if row is not None and row.status != "pending":
                # The running hub got there first: our copy of the read (to show the card) is
                # usually on its way; wait for it a moment, else report without it.
                handled_elsewhere = (row, time.monotonic() + SHOW_GRACE)
        elif time.monotonic() >= handled_elsewhere[1]:
            return ReadOutcome(handled_elsewhere[0], mine=False)
        if time.monotonic() >= deadline:
            row = _cancel(store, command_id, "no card was presented in time")
            if row is not None and row.status not in ("pending", "cancelled"):
                return ReadOutcome(row, mine=False)
            raise EnrollError(f"no card was presented at {reader} in time; nothing enrolled "
                              "(the site's reader is back to normal)")


def _report(outcome: ReadOutcome, say: Say) -> Enrollment:
    row = outcome.enrollment
    if outcome.shown is not None:
        say(f"card read: {outcome.shown}")
    elif not outcome.mine and row.status in ("enrolled", "conflict"):
        say("card read (the running hub handled it)")
    if row.status == "enrolled":
        already = row.detail is not None and row.detail.startswith("already")
        say(f"enrolled to member {row.member_id}" + (" (the member had this card already)" if already else ""))
        return row
    if row.status == "conflict":
        raise EnrollError(f"this card is already enrolled to member {row.detail!r}; nothing enrolled "
                          f"(remove it there first: torwart-hub cards remove {row.detail} FINGERPRINT)")
    raise EnrollError(f"enrollment {row.status}: {row.detail}; nothing enrolled")


def _push_all(cfg: HubConfig, store: Store, link: HubLink, inbox: _Inbox, site: str, *, member_id: str,
              by_hub: bool, say: Say) -> None:
    """Bring every site whose cache holds the member to the version with the new card.

    When the running hub enrolled the card (``by_hub``), it publishes that version itself:
    the CLI waits a moment for it (a cache publication or acknowledgement of that version)
    rather than racing it with a full cache the site would refuse as stale."""
    now = int(time.time())
    configured = {s.id for s in cfg.sites}
    sites = sorted(store.sites_for_member(member_id, now - LOOK_BACK) & configured)
    if site not in sites:
        say(f"site {site}: member {member_id} has no booking or standing grant here, so the card opens "
            "no door here yet")
    caches = CacheManager(store, cfg, signing_key(cfg))
    keys = envelope.trusted_keys(signing_key(cfg).public_key())
    for s in sites:
        if s != site:
            link.subscribe_site(s, (Kind.CACHE, Kind.CACHE_DELTA, Kind.CACHE_ACK))
    for s in sites:
        caches.rebuild(s, now)
        latest = caches.latest_version(s)
        assert latest is not None
        if by_hub and _published(store, inbox, keys, s, version=latest,
                                  deadline=time.monotonic() + HUB_PUBLISH_GRACE):
            say(f"cache version {latest} pushed to site {s} (by the running hub)")
        else:
            body = caches.full_body(s)
            if not link.publish(s, Kind.CACHE, caches.signed(body), retain=True):
                raise EnrollError(f"the card is enrolled, but publishing site {s}'s cache failed "
                                  "(the running hub publishes it; or run torwart-hub push)")
            caches.mark_retained_full(s, body.version)
            say(f"cache version {body.version} pushed to site {s}")
        _wait_cache_ack(store, inbox, s, latest, say)


def _published(store: Store, inbox: _Inbox, keys: Mapping[str, Ed25519PublicKey], site: str, *, version: int,
               deadline: float) -> bool:
    """Whether ``version`` (or a newer one) of the site's cache is out already, or comes out
    before ``deadline``: published on the cache topics, or acknowledged by the site."""
    state = store.site_state(site)
    if state is not None and state.cache_version is not None and state.cache_version >= version:
        inbox.held.append((site, Kind.CACHE_ACK, m.encode(m.CacheAck(version=state.cache_version, ok=True,
                                                                     error=None, ts=time.time()))))
        return True
    while time.monotonic() < deadline:
        msg = inbox.next(deadline)
        if msg is None or msg[0] != site:
            continue
        try:
            if msg[1] is Kind.CACHE_ACK:
                ack = m.decode(msg[2], m.CacheAck)
                if ack.ok and ack.version is not None and ack.version >= version:
                    inbox.held.append(msg)
                    return True
            elif msg[1] in (Kind.CACHE, Kind.CACHE_DELTA):
                body = envelope.open_body(msg[2], keys, site)
                if isinstance(body, m.CacheFull | m.CacheDelta) and body.version >= version:
                    return True
        except WireError:
            continue
    return False


def _wait_cache_ack(store: Store, inbox: _Inbox, site: str, version: int, say: Say) -> None:
    deadline = time.monotonic() + CACHE_ACK_TIMEOUT
    while time.monotonic() < deadline:
        msg = inbox.next(deadline)
        if msg is None or msg[0] != site or msg[1] is not Kind.CACHE_ACK:
            continue
        try:
            ack = m.decode(msg[2], m.CacheAck)
        except WireError:
            continue
        if ack.version != version and not (ack.ok and ack.version is not None and ack.version > version):
            continue
        if ack.ok or ack.error == "stale_version":  # stale: it holds this version or a newer one already
            if ack.ok:
                store.update_site_state(site, {"cache_version": ack.version})
            say(f"site {site} holds {ack.version if ack.ok else version}")
            return
        raise EnrollError(f"the card is enrolled, but site {site} refused cache version {version}: {ack.error}")
    say(f"site {site} has not acknowledged version {version} within {CACHE_ACK_TIMEOUT:.0f} s; "
        "it applies it when it is online (torwart-hub sites shows its version)")
