"""An enrollment's state as an admin follows it (the dashboard's ``GET /api/v1/enrollments/{id}``):

``sent`` → ``acknowledged`` → (``read``) → ``enrolled`` → ``pushed`` → ``held``, or
``refused`` (``code``: the site's error code, or ``conflict``) or ``expired``.

``enrolled`` is final when the member may open nothing at that site (no cache changes).
An enrollment whose site never acknowledged, or whose window passed without a card, is
closed as ``expired`` when it is next looked at (``close_overdue``).
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

from ..store import Enrollment, Store
from .handler import MAX_SECONDS
from .site import ACK_TIMEOUT

#: After the site's window closes, a read is still waited for this long (as the CLI does).
READ_GRACE = 5.0

FINAL = ("refused", "expired", "held")


def close_overdue(store: Store, row: Enrollment, now: float) -> Enrollment:
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
