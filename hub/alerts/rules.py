"""Which events and site states open or clear which alert: pure functions, no store.

An alert is keyed by (site, kind, subject): the subject is the door or reader it is about,
or "" for the site as a whole. Kinds and what clears them:

- ``door_forced`` (``door.forced_open``) and ``door_held`` (``door.held_open``): cleared
  by ``door.closed`` of that door;
- ``reader_tamper``, ``reader_offline``, ``reader_error`` (the ``reader.*`` events):
  cleared by ``reader.online`` of that reader;
- ``site_offline``: the site's last status says offline for longer than
  ``offline_minutes``; cleared when it is online again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from wire import messages as m

DOOR_KINDS = ("door_forced", "door_held")
READER_KINDS = ("reader_tamper", "reader_offline", "reader_error")
SITE_OFFLINE = "site_offline"
KINDS = (*DOOR_KINDS, *READER_KINDS, SITE_OFFLINE)


@dataclass(frozen=True, slots=True)
class Decision:
    """Open or clear the alert (kind, subject) of a site; ``detail`` goes into the message."""

    action: Literal["open", "clear"]
    kind: str
    subject: str
    at: float
    detail: str | None = None


def from_event(ev: m.Event) -> list[Decision]:
    """What one stored event decides (nothing for most events)."""
    if isinstance(ev, m.DoorForcedOpen):
        return [Decision("open", "door_forced", ev.door, ev.ts)]
    if isinstance(ev, m.DoorHeldOpen):
        return [Decision("open", "door_held", ev.door, ev.ts, f"{ev.seconds:.0f} s")]
    if isinstance(ev, m.DoorClosed):
        return [Decision("clear", k, ev.door, ev.ts) for k in DOOR_KINDS]
    if isinstance(ev, m.ReaderTamper):
        return [Decision("open", "reader_tamper", ev.reader, ev.ts)]
    if isinstance(ev, m.ReaderOffline):
        return [Decision("open", "reader_offline", ev.reader, ev.ts)]
    if isinstance(ev, m.ReaderError):
        return [Decision("open", "reader_error", ev.reader, ev.ts, ev.error)]
    if isinstance(ev, m.ReaderOnline):
        return [Decision("clear", k, ev.reader, ev.ts) for k in READER_KINDS]
    return []


@dataclass(frozen=True, slots=True)
class SiteSeen:
    """What ``offline`` needs of a site's state: online or not, and since when."""

    site: str
    online: bool
    since: float | None


def offline(states: Iterable[SiteSeen], open_offline: set[str], now: float,
            offline_seconds: float) -> list[tuple[str, Decision]]:
    """(site, decision) for every site offline longer than ``offline_seconds`` without an
    open ``site_offline`` alert (open), and every site online again with one (clear).
    A site the hub has never seen (no state) is not judged."""
    out: list[tuple[str, Decision]] = []
    for st in states:
        if not st.online and st.since is not None and now - st.since >= offline_seconds \
                and st.site not in open_offline:
            out.append((st.site, Decision("open", SITE_OFFLINE, "", st.since)))
        elif st.online and st.site in open_offline:
            out.append((st.site, Decision("clear", SITE_OFFLINE, "", st.since if st.since is not None else now)))
    return out
