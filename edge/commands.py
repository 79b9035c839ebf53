"""Signed messages from the hub: cache envelopes (on the cache worker thread) and commands
(on the main loop), with every refusal code of PROTOCOL.md §3.

Every envelope is verified before its body is parsed (wire.envelope.open_body), refused
when its body is not for this site, and answered with an ack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from wire import envelope
from wire import messages as m
from wire.errors import EXPIRED, LOCKDOWN, MALFORMED, REPLAYED, UNKNOWN_DOOR, UNKNOWN_ROOM, WireError
from wire.keys import b64_32
from wire.seal import seal
from wire.topics import Kind

from .cache import CacheStore
from .clock import ClockSource
from .config import EdgeConfig, ReaderSection
from .door import Door
from .link import Link
from .occupancy import Occupancy
from .statedb import StateDB
from .trust import Trust, apply_envelope

log = logging.getLogger(__name__)


class CommandSite(Protocol):
    """What command handling needs of the site, and no more: ``edge.agent.Agent`` is one.

    Everything but ``cfg`` and ``site`` is used on the main loop only (the stores there are
    the main loop's connections); the cache worker thread touches ``cfg`` and ``site``."""

    @property
    def cfg(self) -> EdgeConfig: ...

    @property
    def site(self) -> str: ...

    @property
    def clock(self) -> ClockSource: ...

    @property
    def cache(self) -> CacheStore:
        """For its newest signed time (``note_issued_at``)."""

    @property
    def state(self) -> StateDB:
        """Executed command ids and the lockdown flag."""

    @property
    def doors(self) -> Mapping[str, Door]: ...

    @property
    def reader_cfg(self) -> Mapping[str, ReaderSection]: ...

    @property
    def occupancy(self) -> Occupancy: ...

    @property
    def link(self) -> Link:
        """For the command acks."""

    def emit(self, type_: str, **fields: Any) -> None:
        """Record an event (edge/events.py)."""

    def set_lockdown(self, on: bool) -> None:
        """Put every door in lockdown, or end it (and publish the new status)."""


class CommandHandler:
    def __init__(self, agent: CommandSite) -> None:
        self.agent = agent
        cfg = agent.cfg
        #: The hub's keys trusted now: the config's, until a verified cache named others.
        self.trust = Trust.of(cfg.hub.signing_public_key, agent.cache)
        self.limit = cfg.policy.max_envelope_bytes
        self.enroll_key = (X25519PublicKey.from_public_bytes(b64_32(cfg.hub.enroll_public_key))
                           if cfg.hub.enroll_public_key else None)
        self._enroll: dict[str, tuple[str, float]] = {}  # reader → (command id, monotonic deadline)

    # --- caches (worker thread: touches only ``store``, ``trust`` and immutable config) -----------

    def apply_cache(self, store: CacheStore, kind: Kind, held: list[bytes]) -> tuple[int | None, str | None]:
        """Verify, check and apply one cache envelope; return (version, error code or None)
        (``edge.trust.apply_envelope``: a cache.full naming ``keys`` changes the keys trusted
        for caches and commands alike)."""
        return apply_envelope(store, self.trust, self.agent.site, kind, held, limit=self.limit)

    # --- commands (main loop) ---------------------------------------------------------------------

    def handle(self, payload: bytes) -> None:
        a = self.agent
        cmd: m.Command | None = None
        try:
            body = envelope.open_body(payload, self.trust.keys, a.site, limit=self.limit)
            if not isinstance(body, m.Command):
                raise WireError(MALFORMED, f"a {type(body).__name__} arrived on the command topic")
            cmd = body
            # The signature is verified: its issued_at is a true lower bound of the time, and it
            # counts before the expiry check (PROTOCOL.md §3: caches and commands alike).
            newest = a.cache.note_issued_at(cmd.issued_at)
            now = a.clock.time()
            if not (cmd.expires_at > now and cmd.expires_at > newest):
                raise WireError(EXPIRED, f"command {cmd.id} expired at {cmd.expires_at} "
                                         f"(clock {now:.0f}, newest signed time {newest})")
            if a.state.command_seen(cmd.id):
                raise WireError(REPLAYED, f"command {cmd.id} was executed before")
            if cmd.door is not None and cmd.door not in a.doors:
                raise WireError(UNKNOWN_DOOR, f"no door {cmd.door!r} at this site")
            if cmd.room is not None and cmd.room not in {r.id for r in a.cfg.rooms}:
                raise WireError(UNKNOWN_ROOM, f"no room {cmd.room!r} at this site")
            if cmd.reader is not None and cmd.reader not in a.reader_cfg:
                raise WireError(MALFORMED, f"no reader {cmd.reader!r} at this site")
            if cmd.action == "enroll" and self.enroll_key is None:
                raise WireError(MALFORMED, "enroll needs [hub] enroll_public_key in this site's config")
            if cmd.action == "unlock" and a.state.flag("lockdown", False):
                # Ending a lockdown is an admin's act (lockdown_end), never a side effect of an
                # unlock. The id is kept: the refused unlock must not act if replayed after it.
                a.state.record_command(cmd.id, now, cmd.expires_at)
                raise WireError(LOCKDOWN, f"command {cmd.id}: no remote unlock in lockdown")
            a.state.record_command(cmd.id, now, cmd.expires_at)
        except WireError as exc:
            log.warning("command refused (%s): %s", exc.code, exc)
            self._ack(cmd.id if cmd else None, exc.code)
            a.emit("command.rejected", command=cmd.id if cmd else None, action=cmd.action if cmd else None,
                   error=exc.code)
            return
        self._execute(cmd)
        self._ack(cmd.id, None)
        a.emit("command.executed", command=cmd.id, action=cmd.action, error=None)

    def _execute(self, cmd: m.Command) -> None:
        a = self.agent
        log.info("command %s: %s door=%s", cmd.id, cmd.action, cmd.door)
        if cmd.action == "unlock":
            assert cmd.door is not None  # checked by the message type
            if not a.doors[cmd.door].unlock(cmd.seconds, by="command"):
                return  # the door refused it (lockdown); handle() checked that already
            a.emit("access.granted", door=cmd.door, cred=None, who=None, ref=None, reason="command")
        elif cmd.action == "lockdown":
            a.set_lockdown(True)
        elif cmd.action == "lockdown_end":
            a.set_lockdown(False)
        elif cmd.action == "checkout_all":
            a.occupancy.checkout_all(cmd.room, reason="command")
        elif cmd.action == "enroll":
            assert cmd.reader is not None and cmd.seconds is not None
            self._enroll[cmd.reader] = (cmd.id, time.monotonic() + cmd.seconds)

    def _ack(self, command_id: str | None, error: str | None) -> None:
        a = self.agent
        ack = m.CommandAck(id=command_id or "", ok=error is None, error=error, ts=a.clock.time())
        a.link.publish(Kind.COMMAND_ACK, m.encode(ack))

    # --- enrollment -------------------------------------------------------------------------------

    def take_enrollment(self, reader_id: str, credential: str) -> bool:
        """If an enroll command waits at this reader, seal ``credential`` for the hub, report
        it as ``enroll.read`` and return True: the read opens no door."""
        pending = self._enroll.get(reader_id)
        if pending is None:
            return False
        del self._enroll[reader_id]
        command_id, deadline = pending
        if time.monotonic() > deadline or self.enroll_key is None:
            return False
        sealed = seal(credential, self.enroll_key, self.agent.site)
        self.agent.emit("enroll.read", reader=reader_id, command=command_id, sealed=sealed)
        door = self.agent.doors[self.agent.reader_cfg[reader_id].door]
        door.deny_feedback()  # audible, but the door stays shut
        return True
