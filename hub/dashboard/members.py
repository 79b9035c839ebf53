"""A member's data from the dashboard (admins only): the access request's export
(``GET /api/v1/members/{member}/export``) and erasure (``POST
/api/v1/members/{member}/erase``), the same acts as ``torwart-hub members export|remove``
(``hub.core.privacy``).

The running hub erases in one store transaction and publishes each changed site's new
cache as the retained cache.full at once; it does not wait for the sites here: the answer
lists the new versions, and ``GET /api/v1/sites`` shows each site's applied version as its
acknowledgement arrives (an offline site gets the new version when it reconnects). The
log names who erased, never the member.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import HubError
from .auth import Principal
from .checks import Outcome, actor
from .common import on_loop

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)


async def refused(hub: Hub, p: Principal, member: str, act: str) -> Outcome | None:
    """``_refused`` on the hub's loop (the dashboard's confirm step checks before it asks)."""
    return await on_loop(hub, lambda: _refused(hub, p, member, act))


def _refused(hub: Hub, p: Principal, member: str, act: str) -> Outcome | None:
    """403 (not an admin) or 404 (no such member), recorded in the audit trail; None to go ahead."""
    out = None
    if not p.admin:
        out = Outcome(403, {"error": f"a {p.role} may not see or erase members' data"})
    elif hub.member(member) is None:
        out = Outcome(404, {"error": f"no member {member!r}"})
    if out is not None:
        hub.run_as(actor(p), lambda: hub.record_act(act, outcome="refused", member=member,
                                                    reason=f"{out.status}: {out.doc['error']}"))
    return out


async def export(hub: Hub, p: Principal, member: str) -> Outcome:
    """Everything the hub holds about ``member`` (admins; 404 for an unknown member)."""
    def go() -> Outcome:
        refused = _refused(hub, p, member, "members.export")
        if refused is not None:
            return refused
        doc = hub.run_as(actor(p), lambda: hub.export_member(member))
        log.info("dashboard: a member's data exported by %s", p.name)
        return Outcome(200, doc)

    return await on_loop(hub, go)


async def erase(hub: Hub, p: Principal, member: str) -> Outcome:
    """Erase ``member`` and publish the caches that held them (admins; 404 for an unknown
    member): ``{"member", "deleted": {table: rows}, "sites": {site: new version}}``."""
    def go() -> Outcome:
        refused = _refused(hub, p, member, "members.erase")
        if refused is not None:
            return refused
        try:
            done = hub.run_as(actor(p), lambda: hub.erase_member(member))
        except HubError as exc:
            return Outcome(404, {"error": str(exc)})
        log.info("dashboard: a member erased by %s; new caches for %s", p.name,
                 ", ".join(done.versions) or "no site")
        return Outcome(200, {"member": done.member, "deleted": done.deleted, "sites": done.versions})

    return await on_loop(hub, go)
