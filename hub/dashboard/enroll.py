"""Card enrollment at a site from the dashboard (admins): start it (``POST
/api/v1/sites/{site}/enroll``) and follow it (``GET /api/v1/enrollments/{id}``).

Starting is the application core's act (``Hub.start_enrollment``): it records the pending
enrollment exactly as ``torwart-hub cards enroll --site`` does and publishes the signed
``enroll`` command through the running hub. The rest happens in the running hub: it
records the site's acknowledgement, opens the sealed ``enroll.read``, enrolls the card and
pushes the caches that hold it. Following an enrollment reads its state
(``hub.enroll.state``):

``sent`` → ``acknowledged`` → (``read``) → ``enrolled`` → ``pushed`` → ``held``, or
``refused`` (``code``: the site's error code, or ``conflict``) or ``expired``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.errors import NoEnrollKey, NotSent
from ..enroll import MAX_SECONDS, EnrollError
from ..store import UnknownMember
from .auth import Principal
from .checks import Outcome, actor, check, record_refusal
from .common import on_loop

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


async def start(hub: Hub, p: Principal, site: str, params: dict[str, Any]) -> Outcome:
    """Check, record and send an enrollment at ``site``; 202 with ``{"id": command id}``."""
    member, refused = _text(params.get("member")), _checked(hub, p, site, params)
    if refused is not None:
        await record_refusal(hub, p, "enroll", refused, site=site, member=member)
        return refused
    reader, seconds = str(params.get("reader")).strip(), int(params.get("seconds", 60))
    assert member is not None

    def go() -> Outcome:
        try:
            cmd = hub.run_as(actor(p), lambda: hub.start_enrollment(site, member, reader, seconds))
        except NoEnrollKey as exc:
            return Outcome(503, {"error": str(exc)})
        except UnknownMember:
            return Outcome(400, {"error": f"no member {member!r}"})
        except EnrollError as exc:
            return Outcome(400, {"error": str(exc)})
        except NotSent:
            return Outcome(503, {"error": "not connected to the broker"})
        log.info("dashboard: enrollment at site %s, reader %s, for member %s started by %s (command %s)",
                 site, reader, member, p.name, cmd.id)
        return Outcome(202, {"id": cmd.id, "site": site, "member": member, "reader": reader, "seconds": seconds})

    return await on_loop(hub, go)


def _checked(hub: Hub, p: Principal, site: str, params: dict[str, Any]) -> Outcome | None:
    """Why an enrollment may not start (404, 403, 400), or None."""
    refused = check(hub, p, site, "enroll", {})
    if refused is not None:
        return refused
    member, reader, raw = _text(params.get("member")), _text(params.get("reader")), params.get("seconds", 60)
    if member is None or reader is None:
        return Outcome(400, {"error": "member and reader are required"})
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError
        seconds = int(raw)
    except ValueError:
        return Outcome(400, {"error": "seconds must be a whole number"})
    if not 1 <= seconds <= MAX_SECONDS:
        return Outcome(400, {"error": f"seconds must be 1..{MAX_SECONDS}"})
    return None


async def status(hub: Hub, p: Principal, command_id: str) -> Outcome:
    """The state of enrollment ``command_id`` (admins; 404 for an unknown one)."""
    if not p.admin:
        return Outcome(403, {"error": f"a {p.role} may not enroll cards"})
    doc = await on_loop(hub, lambda: hub.enrollment(command_id, p.may_see))
    if doc is None:
        return Outcome(404, {"error": f"no enrollment {command_id!r}"})
    return Outcome(200, doc)
