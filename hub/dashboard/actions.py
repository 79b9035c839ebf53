"""What an admin or caretaker can make a site do from the dashboard or the API:
push the full cache, or send a signed command (unlock, lockdown, lockdown_end,
checkout_all, enroll). Both the page's confirm step and the JSON API end here.

Both are the application core's acts (``Hub.push``, ``Hub.send_command``): the command is
signed by the hub and published on the site's ``command`` topic, as ``torwart-hub unlock``
does; the site acknowledges on ``command/ack`` and reports the outcome as events, which the
page then shows live.

An unlock is refused (409) at a site the hub knows to be in lockdown (its retained Status
says so), for admins too: ending the lockdown is a separate act, for admins only. The site
refuses it as well (ack ``lockdown``); the hub's refusal tells the user at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.errors import BadCommand, InLockdown, NotSent, SiteRevoked
from .auth import Principal
from .checks import ACTIONS, MAX_UNLOCK_SECONDS, Outcome, as_, check, int_or_none, opt_str, record_refusal
from .common import on_loop

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)

__all__ = ["ACTIONS", "MAX_UNLOCK_SECONDS", "Outcome", "check", "perform", "record_refusal", "refused_in_lockdown"]

def _locked(site: str) -> Outcome:
    return Outcome(409, {"error": f"site {site!r} is in lockdown: no door is unlocked until an admin ends it"})


async def refused_in_lockdown(hub: Hub, site: str, action: str) -> Outcome | None:
    """409 for an unlock at a site in lockdown, else None."""
    if action != "unlock" or not await on_loop(hub, lambda: hub.in_lockdown(site)):
        return None
    return _locked(site)


async def perform(hub: Hub, p: Principal, site: str, action: str, params: dict[str, Any]) -> Outcome:
    """Check and carry out ``action`` at ``site`` for ``p``; 202 when sent. Refusals and acts
    are recorded in the audit trail as ``p``'s."""
    refused = check(hub, p, site, action, params)
    if refused is not None:
        await record_refusal(hub, p, action, refused, site=site, params=params)
        return refused
    if action == "enroll":  # recorded as a pending enrollment first (hub/dashboard/enroll.py)
        from . import enroll

        return await enroll.start(hub, p, site, params)
    if action == "push":
        try:
            version = await on_loop(hub, as_(hub, p, lambda: hub.push(site)))
        except SiteRevoked as exc:
            return Outcome(409, {"error": str(exc)})
        log.info("dashboard: push of version %d to site %s by %s", version, site, p.name)
        return Outcome(202, {"site": site, "action": action, "published_version": version})
    try:
        door, seconds = opt_str(params.get("door")), int_or_none(params.get("seconds"), "seconds")
        room, reader = opt_str(params.get("room")), opt_str(params.get("reader"))
        cmd = await on_loop(hub, as_(hub, p, lambda: hub.send_command(site, action, door=door, seconds=seconds,
                                                                       room=room, reader=reader)))
    except InLockdown:
        log.warning("dashboard: unlock at site %s by %s refused: the site is in lockdown", site, p.name)
        return _locked(site)
    except (BadCommand, ValueError) as exc:
        return Outcome(400, {"error": f"bad command: {exc}"})
    except SiteRevoked as exc:
        return Outcome(409, {"error": str(exc)})
    except NotSent:
        return Outcome(503, {"error": "not connected to the broker"})
    log.info("dashboard: %s sent to site %s by %s (command %s)", action, site, p.name, cmd.id)
    return Outcome(202, {"site": site, "id": cmd.id, "action": cmd.action})
