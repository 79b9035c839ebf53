"""The audit trail: every act a person does through the dashboard, the API or the command
line is recorded once, in the store, with who, when, where and what came of it.

Who acts is the hub's ``actor`` at the time: the command line's hub acts as
``cli:<unix user>``; the running hub's dashboard sets the logged-in user (``via``
``dashboard``) or the admin token (``api-token``, via ``api``) around each act
(``acting_as``); anything else is the hub itself (``hub``).

The acts themselves (``hub.core``) wrap their work in ``audited``: one row when the act
ends, ``ok``, ``refused`` (a HubError: no such site, a site in lockdown, bad parameters)
or ``failed`` (the broker down, no acknowledgement, any other error), with the reason
(and its HTTP status where the dashboard answers with one, ``409: ...``). An act inside
another (an erasure's cache pushes) records nothing of its own. Refusals the dashboard
makes before an act starts (403, 404, 400) it records with ``record_act``; so does any
act that has no ``audited`` block (an alert's acknowledgement:
``hub.record_act("alerts.ack", site=..., detail=f"alert {id}")``).

Recording never stops an act: a store that cannot take the row is logged.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from ..errors import HubError
from ..store import AuditEntry, AuditRow
from .base import Base
from .errors import BadCommand, InLockdown, NoEnrollKey, NotSent, UnknownSite

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The HTTP status the dashboard answers a refusal of the core with (for the reason).
_STATUS: dict[type[HubError], int] = {InLockdown: 409, BadCommand: 400, UnknownSite: 404, NotSent: 503,
                                      NoEnrollKey: 503}
#: Refusals of the core that are failures on the way, not a "no".
_FAILURES = (NotSent, NoEnrollKey)
#: Longest text kept in an audit row's fields (a parameter is the caller's).
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and through what: ``dashboard``, ``api``, ``cli`` or ``hub``."""

    who: str
    via: str


#: The hub acting on its own (nobody set an actor).
HUB = Actor("hub", "hub")


def cli_actor() -> Actor:
    """The command line's user: ``cli:<unix user>`` (``cli:uid<N>`` without a name)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid{os.getuid()}"
    return Actor(f"cli:{name}", "cli")


def _short(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


class Note:
    """What an act says about itself while ``audited`` runs it: it ``failed`` (no
    acknowledgement, a site's refusal) though it raised nothing, and more ``detail``."""

    def __init__(self, detail: str | None) -> None:
        self.outcome = "ok"
        self.reason: str | None = None
        self.detail = detail

    def failed(self, reason: str | None) -> None:
        self.outcome, self.reason = "failed", reason or "failed"

    def add(self, detail: str) -> None:
        self.detail = f"{self.detail} {detail}" if self.detail else detail


class Auditing(Base):
    """Recording acts (see the module's docstring)."""

    _actor: Actor
    _audit_depth: int

    @property
    def actor(self) -> Actor:
        return self._actor

    @contextmanager
    def acting_as(self, actor: Actor) -> Iterator[None]:
        """The acts inside are ``actor``'s (the running hub's dashboard, around one request's act)."""
        prev, self._actor = self._actor, actor
        try:
            yield
        finally:
            self._actor = prev

    def run_as(self, actor: Actor, fn: Callable[[], T]) -> T:
        """``fn()`` with ``actor`` acting (a function for the hub's loop)."""
        with self.acting_as(actor):
            return fn()

    def record_act(self, act: str, *, outcome: str = "ok", site: str | None = None, door: str | None = None,
                   member: str | None = None, detail: str | None = None, reason: str | None = None,
                   at: float | None = None) -> None:
        """Record one act of the current actor (``outcome``: ok, refused, failed)."""
        a = self._actor
        entry = AuditEntry(at=time.time() if at is None else at, who=a.who[:MAX_TEXT], via=a.via, act=act[:64],
                           outcome=outcome, site_id=_short(site), door=_short(door), member_id=_short(member),
                           detail=_short(detail), reason=_short(reason))
        try:
            self._store.record_audit(entry)
        except Exception:
            log.exception("audit: could not record %s by %s (%s)", act, a.who, outcome)

    @contextmanager
    def audited(self, act: str, *, site: str | None = None, door: str | None = None, member: str | None = None,
                detail: str | None = None) -> Iterator[Note]:
        """Run an act and record it once when it ends (see the module's docstring)."""
        note = Note(detail)
        if self._audit_depth:  # inside another act: that one is recorded
            yield note
            return
        self._audit_depth += 1
        t0 = time.time()
        try:
            yield note
        except HubError as exc:
            status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), None)
            outcome = "failed" if isinstance(exc, _FAILURES) else "refused"
            self._audit_depth -= 1
            self.record_act(act, outcome=outcome, site=site, door=door, member=member, detail=note.detail,
                            reason=f"{status}: {exc}" if status else str(exc), at=t0)
            raise
        except BaseException as exc:
            self._audit_depth -= 1
            self.record_act(act, outcome="failed", site=site, door=door, member=member, detail=note.detail,
                            reason=f"{type(exc).__name__}: {exc}", at=t0)
            raise
        self._audit_depth -= 1
        self.record_act(act, outcome=note.outcome, site=site, door=door, member=member, detail=note.detail,
                        reason=note.reason, at=t0)

    # --- reading it ------------------------------------------------------------------------------

    def audit_log(self, *, site: str | None, since: float | None, until: float | None,
                  limit: int) -> list[AuditRow]:
        """The newest ``limit`` audit rows matching, oldest first (``torwart-hub audit``)."""
        return self._store.audit_log(site_id=site, since=since, until=until, limit=limit, newest=True)

