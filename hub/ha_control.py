"""Home Assistant operates doors through the hub (``[homeassistant] control = true``).

Discovery (hub/homeassistant.py) announces a lock per door and a lockdown switch per
site whose command topics lie under ``torwart-ha/v1/``, outside the sites' topics: a site
can neither write nor read them (its ACL covers its own ``torwart/v1/site/<id>/...``
only), and Home Assistant's broker login may write nothing else
(``torwart-hub homeassistant init``). Home Assistant never signs anything. The hub takes
each request as an act of the dashboard user ``[homeassistant] user``, with that user's
sites and permissions, and carries it out through the application core like the
dashboard does: an unlock at a site in lockdown is refused, every command is signed by
the hub and expires like any other.

A request is a JSON object ``{"action": "UNLOCK", "ts": 1764770000}`` (Home Assistant's
``command_template`` puts its own clock's time in): on ``.../<site>/door/<door>/set``
``UNLOCK`` or ``OPEN`` (``LOCK`` is refused: a door locks by itself when its unlock time
ends); on ``.../<site>/lockdown/set`` ``ON`` (start) or ``OFF`` (end). A retained
request, or one older or further ahead than ``max_age_seconds``, is refused: nothing left
at the broker or queued in the hub's session during an outage opens a door later. The
hub answers every request on ``.../<site>/result`` (not retained): ``{"ok": true,
"action": ..., "door": ..., "command": id}`` or ``{"ok": false, "error": code,
"detail": text}``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wire.topics import IDENT_RE

from .config import HubConfig
from .core import Hub
from .core.audit import Actor
from .core.errors import BadCommand, InLockdown, NotSent
from .dashboard.auth import PERMISSIONS
from .ha_settings import HA_ROOT

log = logging.getLogger(__name__)

ROOT = HA_ROOT
#: What the hub subscribes to (shared among a hub's nodes when events are).
FILTERS = (f"{ROOT}/+/door/+/set", f"{ROOT}/+/lockdown/set")
MAX_PAYLOAD = 256
#: The payload Home Assistant sends: its action word and its own clock's time.
COMMAND_TEMPLATE = '{"action": "{{ value }}", "ts": {{ now().timestamp() | int }}}'

_DOOR_ACTIONS = {"UNLOCK": "unlock", "OPEN": "unlock"}
_LOCKDOWN_ACTIONS = {"ON": "lockdown", "OFF": "lockdown_end"}


def door_topic(site: str, door: str) -> str:
    return f"{ROOT}/{site}/door/{door}/set"


def lockdown_topic(site: str) -> str:
    return f"{ROOT}/{site}/lockdown/set"


def result_topic(site: str) -> str:
    return f"{ROOT}/{site}/result"


class Refused(Exception):
    """A request the hub does not carry out: ``code`` (machine) and the message (people)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class Request:
    site: str
    #: The hub's act: ``unlock``, ``lockdown`` or ``lockdown_end``.
    action: str
    door: str | None
    ts: float


def _where(name: str) -> tuple[str, str | None]:
    """(site, door or None) from a request topic; Refused for any other topic."""
    rest = name.removeprefix(ROOT + "/").split("/") if name.startswith(ROOT + "/") else []
    if len(rest) == 4 and rest[1] == "door" and rest[3] == "set" and IDENT_RE.match(rest[0]) \
            and IDENT_RE.match(rest[2]):
        return rest[0], rest[2]
    if len(rest) == 3 and rest[1:] == ["lockdown", "set"] and IDENT_RE.match(rest[0]):
        return rest[0], None
    raise Refused("bad_topic", f"not a request topic: {name[:120]!r}")


def parse(name: str, payload: bytes, *, retained: bool, now: float, max_age: float) -> Request:
    """The request on topic ``name``; Refused (with the reason) for anything else."""
    site, door = _where(name)
    if retained:
        raise Refused("retained", "a retained request is never carried out (publish requests without retain)")
    if len(payload) > MAX_PAYLOAD:
        raise Refused("bad_payload", f"request larger than {MAX_PAYLOAD} bytes")
    try:
        doc: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Refused("bad_payload", 'not JSON: expected {"action": ..., "ts": ...}') from None
    if not isinstance(doc, dict) or not isinstance(doc.get("action"), str):
        raise Refused("bad_payload", 'expected {"action": ..., "ts": ...}')
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise Refused("bad_payload", "ts (Home Assistant's time, seconds since 1970) is missing")
    try:
        ts = float(ts)
    except OverflowError:
        ts = math.inf
    if not math.isfinite(ts):
        raise Refused("bad_payload", "ts is not a time")
    if abs(now - ts) > max_age:
        raise Refused("stale", f"the request's time is {now - ts:+.0f} s from the hub's (allowed: ±{max_age:.0f} s)")
    word = doc["action"].upper()
    actions = _DOOR_ACTIONS if door is not None else _LOCKDOWN_ACTIONS
    if word == "LOCK" and door is not None:
        raise Refused("unsupported", "a door locks by itself when its unlock time ends")
    if word not in actions:
        raise Refused("bad_payload", f"action {doc['action'][:20]!r}: expected one of {', '.join(sorted(actions))}")
    return Request(site, actions[word], door, float(ts))


class HaControl:
    """Carries out Home Assistant's requests (on the hub's work loop) and answers them.
    ``publish(topic, payload)`` sends the answer."""

    def __init__(self, cfg: HubConfig, hub: Hub, publish: Callable[[str, bytes], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.hub = hub
        self.publish = publish
        self.clock = clock

    def handle(self, name: str, payload: bytes, retained: bool) -> dict[str, Any]:
        """Check and carry out one request as the configured dashboard user (the audit
        trail's who, via ``homeassistant``); the answer (also published when the topic
        names a site). A refusal before the act is recorded too."""
        actor = Actor(self.cfg.homeassistant.user or "homeassistant", "homeassistant")
        try:
            req = parse(name, payload, retained=retained, now=self.clock(),
                        max_age=self.cfg.homeassistant.max_age_seconds)
            answer = self.hub.run_as(actor, lambda: self._carry_out(req))
        except Refused as exc:
            log.warning("Home Assistant request on %s refused: %s", name[:120], exc)
            why = str(exc)
            answer = {"ok": False, "error": exc.code, "detail": why}
            if exc.code not in ("lockdown", "not_sent", "bad_command"):  # the act itself recorded those
                self.hub.run_as(actor, lambda: self.hub.record_act("homeassistant.request", outcome="refused",
                                                                   detail=name[:120], reason=why))
        try:
            site, _ = _where(name)
        except Refused:
            return answer
        self.publish(result_topic(site), json.dumps(answer).encode())
        return answer

    def _carry_out(self, req: Request) -> dict[str, Any]:
        ha = self.cfg.homeassistant
        if not self.hub.knows(req.site):
            raise Refused("unknown_site", f"no site {req.site!r}")
        if req.door is not None and req.door not in self.hub.site(req.site).doors:
            raise Refused("unknown_door", f"site {req.site!r} has no door {req.door!r}")
        user = self.hub.user(ha.user or "")
        if user is None:
            raise Refused("no_user", f"[homeassistant] user {ha.user!r} is not a dashboard user")
        if (user.sites is not None and req.site not in user.sites) or \
                req.action not in PERMISSIONS.get(user.role, frozenset()):
            raise Refused("forbidden", f"user {user.name!r} ({user.role}) may not {req.action} at {req.site!r}")
        try:
            cmd = self.hub.send_command(req.site, req.action, door=req.door)
        except InLockdown:
            raise Refused("lockdown", f"site {req.site!r} is in lockdown: no door is unlocked until an admin "
                          "ends it") from None
        except BadCommand as exc:
            raise Refused("bad_command", str(exc)) from None
        except NotSent:
            raise Refused("not_sent", "the hub is not connected to the broker") from None
        log.info("Home Assistant (as %s): %s sent to site %s%s (command %s)", user.name, req.action, req.site,
                 f" door {req.door}" if req.door else "", cmd.id)
        return {"ok": True, "action": req.action, "door": req.door, "command": cmd.id}
