"""Card enrollment at a site from the dashboard (admins): start it (``POST
/api/v1/sites/{site}/enroll``) and follow it (``GET /api/v1/enrollments/{id}``).

Starting records the pending enrollment exactly as ``torwart-hub cards enroll --site``
does (``hub.enroll_site.begin``) and publishes the signed ``enroll`` command through the
running hub. The rest happens in ``HubService``: it records the site's acknowledgement,
opens the sealed ``enroll.read``, enrolls the card and pushes the caches that hold it.
Following an enrollment reads its state from the store:

``sent`` → ``acknowledged`` → (``read``) → ``enrolled`` → ``pushed`` → ``held``, or
``refused`` (``code``: the site's error code, or ``conflict``) or ``expired``.

``enrolled`` is final when the member may open nothing at that site (no cache changes).
An enrollment whose site never acknowledged, or whose window passed without a card, is
closed as ``expired`` when it is next looked at.
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ..enroll import MAX_SECONDS, EnrollError
from ..enroll_site import ACK_TIMEOUT, begin
from ..store import Enrollment, Store, UnknownMember
from .actions import Outcome, check
from .auth import Principal
from .common import on_loop

if TYPE_CHECKING:
    from ..service import HubService

log = logging.getLogger(__name__)

#: After the site's window closes, a read is still waited for this long (as the CLI does).
READ_GRACE = 5.0

FINAL = ("refused", "expired", "held")


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


async def start(service: HubService, p: Principal, site: str, params: dict[str, Any]) -> Outcome:
    """Check, record and send an enrollment at ``site``; 202 with ``{"id": command id}``."""
    refused = check(service, p, site, "enroll", {})
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

    def go() -> Outcome:
        if service.enroll.key is None:
            return Outcome(503, {"error": "this hub has no enrollment key to open the site's read "
                                          "(run torwart-hub init)"})
        try:
            cmd = begin(service.cfg, service.store, site, member, reader, seconds=seconds)
        except UnknownMember:
            return Outcome(400, {"error": f"no member {member!r}"})
        except EnrollError as exc:
            return Outcome(400, {"error": str(exc)})
        if not service.link.publish_command(site, cmd, service.caches.signed(cmd)):
            service.store.close_enrollment(cmd.id, "cancelled", "publishing failed", now=time.time())
            return Outcome(503, {"error": "not connected to the broker"})
        log.info("dashboard: enrollment at site %s, reader %s, for member %s started by %s (command %s)",
                 site, reader, member, p.name, cmd.id)
        return Outcome(202, {"id": cmd.id, "site": site, "member": member, "reader": reader, "seconds": seconds})

    return await on_loop(service, go)


async def status(service: HubService, p: Principal, command_id: str) -> Outcome:
    """The state of enrollment ``command_id`` (admins; 404 for an unknown one)."""
    if not p.admin:
        return Outcome(403, {"error": f"a {p.role} may not enroll cards"})

    def read() -> Outcome:
        store = service.store
        row = store.get_enrollment(command_id)
        if row is None or not p.may_see(row.site_id):
            return Outcome(404, {"error": f"no enrollment {command_id!r}"})
        row = _close_overdue(store, row, time.time())
        return Outcome(200, describe(store, row))

    return await on_loop(service, read)


def _close_overdue(store: Store, row: Enrollment, now: float) -> Enrollment:
    """Close a pending enrollment as ``expired`` once nothing can come for it any more."""
    if row.status != "pending":
        return row
    if row.acked_at is None:
        if now < row.created_at + ACK_TIMEOUT:
            return row
        why = f"the site did not acknowledge the command within {ACK_TIMEOUT:.0f} s (is it online?)"
    elif now < row.acked_at + (row.seconds or MAX_SECONDS) + READ_GRACE:
        return row
    else:
        why = "no card was presented in time"
    if _read_seen(store, row):  # a read the hub could not handle: leave it to the CLI
        return row
    closed = store.close_enrollment(row.command_id, "expired", why, now=now)
    return closed if closed is not None else row


def _read_seen(store: Store, row: Enrollment) -> bool:
    """Whether the site reported its ``enroll.read`` for this enrollment (stored events)."""
    for ev in store.events(site_id=row.site_id, type="enroll.read", since=row.created_at - 300, limit=50):
        try:
            if jsonlib.loads(ev.payload).get("command") == row.command_id:
                return True
        except (ValueError, AttributeError):
            continue
    return False


def describe(store: Store, row: Enrollment) -> dict[str, Any]:
    """The API's view of an enrollment: its ``state`` and what explains it."""
    code: str | None = None
    version = row.cache_version
    if row.status == "pending":
        state = "sent" if row.acked_at is None else "read" if _read_seen(store, row) else "acknowledged"
    elif row.status == "enrolled":
        state = "enrolled"
        if version is not None:
            site = store.site_state(row.site_id)
            held = site is not None and site.cache_version is not None and site.cache_version >= version
            state = "held" if held else "pushed"
    elif row.status == "conflict":
        state, code = "refused", "conflict"
    elif row.status == "refused":
        state, code = "refused", row.ack_error
    else:  # expired, cancelled
        state = "expired"
    final = state in FINAL or (state == "enrolled" and version is None)
    window_ends = row.acked_at + row.seconds if row.acked_at is not None and row.seconds is not None else None
    return {"id": row.command_id, "site": row.site_id, "member": row.member_id, "reader": row.reader,
            "seconds": row.seconds, "state": state, "code": code, "detail": row.detail, "final": final,
            "cache_version": version, "window_ends_at": window_ends, "created_at": row.created_at}
