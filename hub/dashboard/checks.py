"""What the dashboard checks before an action (``hub.dashboard.actions``, and card
enrollment, ``hub.dashboard.enroll``), and the outcome both answer with: who may see the
site (404), which actions there are (400), who may do them (403), and the parameters
(door, room, seconds: 400); who acts (``actor``) and the audit row of a refusal
(``record_refusal``; the acts record themselves, ``hub.core.audit``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import commands
from ..core.audit import Actor
from .auth import PERMISSIONS, Principal
from .common import on_loop

if TYPE_CHECKING:
    from ..core import Hub

T = TypeVar("T")

ACTIONS = ("push", *commands.ACTIONS)
MAX_UNLOCK_SECONDS = commands.MAX_UNLOCK_SECONDS


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    doc: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


def actor(p: Principal) -> Actor:
    """Who acts, for the audit trail: a session's user through the dashboard, or the admin
    token through the API."""
    return Actor(p.name, "dashboard" if p.session_key is not None else "api")


def as_(hub: Hub, p: Principal, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` for the hub's loop, run with ``p`` acting (its acts are recorded as ``p``'s)."""
    return lambda: hub.run_as(actor(p), fn)


async def record_refusal(hub: Hub, p: Principal, act: str, out: Outcome, *, site: str | None = None,
                         params: dict[str, Any] | None = None, member: str | None = None) -> None:
    """Record a refusal the dashboard made before an act started (403, 404, 400, 409)."""
    params = params or {}
    door = opt_str(params.get("door"))
    reason = f"{out.status}: {out.doc.get('error', '')}"
    await on_loop(hub, as_(hub, p, lambda: hub.record_act(act, outcome="refused", site=site, door=door,
                                                          member=member, reason=reason)))


def int_or_none(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number")
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"{what} must be a whole number") from None


def opt_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def check(hub: Hub, p: Principal, site: str, action: str, params: dict[str, Any]) -> Outcome | None:
    """Why the action is refused (404/403/400), or None when it may go ahead."""
    if not p.may_see(site) or not hub.knows(site):
        return Outcome(404, {"error": f"no site {site!r}"})
    if action not in ACTIONS:
        return Outcome(400, {"error": f"unknown action {action!r}; one of {', '.join(ACTIONS)}"})
    if not p.may(action, site):
        allowed = ", ".join(sorted(PERMISSIONS.get(p.role, ())))
        return Outcome(403, {"error": f"a {p.role} may not {action} (allowed: {allowed or 'nothing'})"})
    conf = hub.site(site)
    door, room = opt_str(params.get("door")), opt_str(params.get("room"))
    if door is not None and door not in conf.doors:
        return Outcome(400, {"error": f"site {site!r} has no door {door!r}"})
    if room is not None and all(r.id != room for r in conf.rooms):
        return Outcome(400, {"error": f"site {site!r} has no room {room!r}"})
    try:
        seconds = int_or_none(params.get("seconds"), "seconds")
    except ValueError as exc:
        return Outcome(400, {"error": str(exc)})
    if seconds is not None and not 1 <= seconds <= MAX_UNLOCK_SECONDS:
        return Outcome(400, {"error": f"seconds must be 1..{MAX_UNLOCK_SECONDS}"})
    return None
