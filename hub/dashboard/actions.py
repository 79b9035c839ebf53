"""What an admin or caretaker can make a site do from the dashboard or the API:
push the full cache, or send a signed command (unlock, lockdown, lockdown_end,
checkout_all, enroll). Both the page's confirm step and the JSON API end here.

The command is signed by the hub and published on the site's ``command`` topic, as
``torwart-hub unlock`` does; the site acknowledges on ``command/ack`` and reports the
outcome as events, which the page then shows live.

An unlock is refused (409) at a site the hub knows to be in lockdown (its retained Status
says so), for admins too: ending the lockdown is a separate act, for admins only. The site
refuses it as well (ack ``lockdown``); the hub's refusal tells the user at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import commands
from .auth import PERMISSIONS, Principal
from .common import on_loop

if TYPE_CHECKING:
    from ..service import HubService

log = logging.getLogger(__name__)

ACTIONS = ("push", *commands.ACTIONS)
MAX_UNLOCK_SECONDS = commands.MAX_UNLOCK_SECONDS


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    doc: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


def _int_or_none(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number")
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"{what} must be a whole number") from None


def _opt_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def check(service: HubService, p: Principal, site: str, action: str, params: dict[str, Any]) -> Outcome | None:
    """Why the action is refused (404/403/400), or None when it may go ahead."""
    cfg = service.cfg
    if not p.may_see(site) or not any(s.id == site for s in cfg.sites):
        return Outcome(404, {"error": f"no site {site!r}"})
    if action not in ACTIONS:
        return Outcome(400, {"error": f"unknown action {action!r}; one of {', '.join(ACTIONS)}"})
    if not p.may(action, site):
        allowed = ", ".join(sorted(PERMISSIONS.get(p.role, ())))
        return Outcome(403, {"error": f"a {p.role} may not {action} (allowed: {allowed or 'nothing'})"})
    conf = cfg.site(site)
    door, room = _opt_str(params.get("door")), _opt_str(params.get("room"))
    if door is not None and door not in conf.doors:
        return Outcome(400, {"error": f"site {site!r} has no door {door!r}"})
    if room is not None and all(r.id != room for r in conf.rooms):
        return Outcome(400, {"error": f"site {site!r} has no room {room!r}"})
    try:
        seconds = _int_or_none(params.get("seconds"), "seconds")
    except ValueError as exc:
        return Outcome(400, {"error": str(exc)})
    if seconds is not None and not 1 <= seconds <= MAX_UNLOCK_SECONDS:
        return Outcome(400, {"error": f"seconds must be 1..{MAX_UNLOCK_SECONDS}"})
    return None


def in_lockdown(service: HubService, site: str) -> bool:
    """Whether the site's last Status reported a lockdown (on the hub's main loop)."""
    st = service.store.site_state(site)
    return st is not None and st.lockdown


async def refused_in_lockdown(service: HubService, site: str, action: str) -> Outcome | None:
    """409 for an unlock at a site in lockdown, else None."""
    if action != "unlock" or not await on_loop(service, lambda: in_lockdown(service, site)):
        return None
    return Outcome(409, {"error": f"site {site!r} is in lockdown: no door is unlocked until an admin ends it"})


async def perform(service: HubService, p: Principal, site: str, action: str, params: dict[str, Any]) -> Outcome:
    """Check and carry out ``action`` at ``site`` for ``p``; 202 when sent."""
    refused = check(service, p, site, action, params)
    if refused is not None:
        return refused
    if action == "enroll":  # recorded as a pending enrollment first (hub/dashboard/enroll.py)
        from . import enroll

        return await enroll.start(service, p, site, params)
    locked = await refused_in_lockdown(service, site, action)
    if locked is not None:
        log.warning("dashboard: unlock at site %s by %s refused: the site is in lockdown", site, p.name)
        return locked
    if action == "push":
        def push() -> int:
            service.caches.rebuild(site, int(time.time()))
            version = service.publisher.publish_full(site)
            service.live.notify(site, "cache")
            return version

        version = await on_loop(service, push)
        log.info("dashboard: push of version %d to site %s by %s", version, site, p.name)
        return Outcome(202, {"site": site, "action": action, "published_version": version})
    try:
        cmd = commands.build(site, action, door=_opt_str(params.get("door")),
                             seconds=_int_or_none(params.get("seconds"), "seconds"),
                             room=_opt_str(params.get("room")), reader=_opt_str(params.get("reader")))
    except (ValueError, TypeError) as exc:
        return Outcome(400, {"error": f"bad command: {exc}"})
    sent = await on_loop(service, lambda: service.link.publish_command(site, cmd, service.caches.signed(cmd)))
    if not sent:
        return Outcome(503, {"error": "not connected to the broker"})
    log.info("dashboard: %s sent to site %s by %s (command %s)", action, site, p.name, cmd.id)
    return Outcome(202, {"site": site, "id": cmd.id, "action": cmd.action})
