"""Enrollment at a site, the hub's side of the conversation: record the pending
enrollment (``begin``), then, on the command line (``torwart-hub cards enroll --site S
--reader R``), wait for the site's acknowledgement and for its sealed ``enroll.read``, open
it and report what became of it. Sending the command and pushing the caches that now
hold the card are the application core's acts (``hub.core``), which runs the conversation.

Each step is reported through ``say`` as it happens. A running hub sees the same event
and may finish the enrollment first; the store lets only one of them enroll the card and
the other reports what happened. Nothing here logs or prints the credential string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire import envelope
from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from .. import commands
from ..conversation import Conversation, Msg
from ..store import Enrollment, Store
from .handler import DELIVERY_GRACE, MAX_SECONDS, EnrollError, EnrollHandler, ReadOutcome

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
#: What the command line listens to while a card is enrolled at a site.
LISTEN = (Kind.COMMAND_ACK, Kind.EVENT, Kind.CACHE_ACK, Kind.CACHE, Kind.CACHE_DELTA)

Say = Callable[[str], None]


def begin(store: Store, site: str, member_id: str, reader: str, *, seconds: int) -> m.Command:
    """Check the request, build the ``enroll`` command and record the pending enrollment
    (before the command goes out: whichever process sees the read then knows the member).
    The core starts every enrollment here, for the command line and the dashboard, after
    checking that ``site`` is configured. EnrollError when the window is out of range or
    the command is malformed; UnknownMember when there is no such member."""
    if not 1 <= seconds <= MAX_SECONDS:
        raise EnrollError(f"seconds at a site is 1 to {MAX_SECONDS} (how long a site waits for a card at most)")
    try:
        cmd = commands.build(site, "enroll", reader=reader, seconds=seconds)
    except ValueError as exc:
        raise EnrollError(str(exc)) from None
    store.add_enrollment(cmd.id, site, member_id, reader, created_at=cmd.issued_at,
                         expires_at=cmd.expires_at + seconds + DELIVERY_GRACE, seconds=seconds)
    return cmd


def cancel(store: Store, command_id: str, why: str) -> Enrollment | None:
    """Close a pending enrollment as cancelled (``why``); the row after, if there is one."""
    return store.close_enrollment(command_id, "cancelled", why, now=time.time())


def wait_ack(store: Store, inbox: Conversation, site: str, command_id: str, *, reader: str, seconds: int,
             say: Say) -> None:
    """Wait for the site's ack of the enroll command; EnrollError (the enrollment
    cancelled) when it refuses or does not answer within ACK_TIMEOUT. Messages that
    overtake the ack (the card's read) are kept for the next wait."""
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
        cancel(store, command_id, f"refused by the site: {ack.error}")
        hint = (" (does the site have that reader, and [hub] enroll_public_key in its site.toml?)"
                if ack.error == "malformed" else "")
        raise EnrollError(f"site {site} refused the enroll command: {ack.error}{hint}; nothing enrolled")
    cancel(store, command_id, "no acknowledgement from the site")
    raise EnrollError(f"site {site} did not acknowledge the command within {ACK_TIMEOUT:.0f} s "
                      "(is it online? see torwart-hub sites); nothing enrolled")


def wait_read(store: Store, key: X25519PrivateKey, inbox: Conversation, site: str, command_id: str, *,
              reader: str, deadline: float) -> ReadOutcome:
    """Wait for the site's sealed read of this enrollment and handle it with ``key``
    (``EnrollHandler.on_read``), or for the running hub to have handled it; EnrollError
    when no card came by ``deadline`` (monotonic)."""
    handler = EnrollHandler(store, key)
    kept: list[Msg] = []  # cache publications and acks: what comes after the read needs them
    try:
        return _read_loop(store, handler, inbox, site, command_id, reader=reader, deadline=deadline, kept=kept)
    finally:
        inbox.held.extend(kept)


def _read_loop(store: Store, handler: EnrollHandler, inbox: Conversation, site: str, command_id: str, *,
               reader: str, deadline: float, kept: list[Msg]) -> ReadOutcome:
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
            row = cancel(store, command_id, "no card was presented in time")
            if row is not None and row.status not in ("pending", "cancelled"):
                return ReadOutcome(row, mine=False)
            raise EnrollError(f"no card was presented at {reader} in time; nothing enrolled "
                              "(the site's reader is back to normal)")


def report(outcome: ReadOutcome, say: Say) -> Enrollment:
    """Say what became of the read; the enrollment if the card is enrolled, else EnrollError."""
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


def published(store: Store, inbox: Conversation, keys: Mapping[str, Ed25519PublicKey], site: str, *,
              version: int, deadline: float) -> bool:
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
