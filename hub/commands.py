"""Signed commands for sites (PROTOCOL.md §3 ``command``), built in one place for the
running hub's admin API and the CLI."""

from __future__ import annotations

import time
import uuid
from typing import get_args

from wire import messages as m

ACTIONS: tuple[str, ...] = get_args(m.Action)

#: A command not executed within this long is refused by the site as expired (and dropped
#: by the broker from an offline site's queue: HubLink.publish_command).
COMMAND_TTL = 120
#: A remote unlock is for someone at the door now: it is done within this long or not at all.
UNLOCK_TTL = 30
#: The longest remote unlock, whichever way it is asked for (dashboard form, API, CLI).
MAX_UNLOCK_SECONDS = 3600


def build(site: str, action: str, *, door: str | None = None, seconds: int | None = None, room: str | None = None,
          reader: str | None = None, now: float | None = None, ttl: int | None = None) -> m.Command:
    """A command body with a fresh id; validated by the message type (e.g. unlock needs a
    door, enroll a reader and at most 120 s). ``ttl`` defaults to UNLOCK_TTL for an unlock
    and COMMAND_TTL otherwise."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if ttl is None:
        ttl = UNLOCK_TTL if action == "unlock" else COMMAND_TTL
    t = int(time.time() if now is None else now)
    try:
        return m.Command(site=site, id=uuid.uuid4().hex, issued_at=t, expires_at=t + ttl,
                         action=action,  # type: ignore[arg-type]
                         door=door, seconds=seconds, room=room, reader=reader)
    except ValueError as exc:
        raise ValueError(f"{action}: {exc}") from None
