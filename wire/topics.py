"""MQTT topic names (PROTOCOL.md §2): the one place that builds and parses them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import MALFORMED, WireError

ROOT = "torwart/v1/site"
#: Site, room, door and reader ids (PROTOCOL.md §2): the one definition; ``wire.messages.Ident``
#: and both sides' configs validate with it.
IDENT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
IDENT_RE = re.compile(IDENT_PATTERN)


class Kind(StrEnum):
    """The topic kinds below ``torwart/v1/site/{site}/``."""

    STATUS = "status"
    EVENT = "event"
    EVENT_ACK = "event/ack"
    OCCUPANCY = "occupancy"
    DOOR = "door"
    CACHE = "cache"
    CACHE_DELTA = "cache/delta"
    CACHE_ACK = "cache/ack"
    COMMAND = "command"
    COMMAND_ACK = "command/ack"


#: What a site may publish, and what it may read (the broker ACL enforces both).
SITE_WRITES: tuple[Kind, ...] = (
    Kind.STATUS,
    Kind.EVENT,
    Kind.OCCUPANCY,
    Kind.DOOR,
    Kind.CACHE_ACK,
    Kind.COMMAND_ACK,
)
SITE_READS: tuple[Kind, ...] = (Kind.EVENT_ACK, Kind.CACHE, Kind.CACHE_DELTA, Kind.COMMAND)

_BY_SUFFIX = {k.value: k for k in Kind if k is not Kind.DOOR}


def check_ident(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it is a valid site/room/door/reader id, else raise WireError."""
    if not IDENT_RE.match(value):
        raise WireError(MALFORMED, f"{what} {value!r} does not match {IDENT_PATTERN[1:-1]}")
    return value


def topic(site: str, kind: Kind, door: str | None = None) -> str:
    """Build the topic of ``kind`` for ``site`` (``door`` only, and always, for Kind.DOOR)."""
    check_ident(site, "site")
    if kind is Kind.DOOR:
        if door is None:
            raise ValueError("a door topic needs a door id")
        return f"{ROOT}/{site}/door/{check_ident(door, 'door')}"
    if door is not None:
        raise ValueError(f"{kind} topics take no door")
    return f"{ROOT}/{site}/{kind.value}"


def site_filter(kind: Kind, site: str = "+") -> str:
    """A subscription filter for ``kind`` of one site, or of every site (``+``)."""
    if site != "+":
        check_ident(site, "site")
    suffix = "door/+" if kind is Kind.DOOR else kind.value
    return f"{ROOT}/{site}/{suffix}"


def shared(filter_: str, group: str = "hub") -> str:
    """The MQTT 5 shared-subscription form of ``filter_`` (load split across a group)."""
    return f"$share/{group}/{filter_}"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic."""

    site: str
    kind: Kind
    door: str | None = None


def parse(name: str) -> Topic:
    """Parse a concrete topic name; raise WireError for anything not in PROTOCOL.md §2."""
    prefix = ROOT + "/"
    if not name.startswith(prefix):
        raise WireError(MALFORMED, f"topic {name!r} is not under {ROOT}/")
    site, _, rest = name[len(prefix) :].partition("/")
    check_ident(site, "site")
    if rest.startswith("door/"):
        door = rest[len("door/") :]
        return Topic(site, Kind.DOOR, check_ident(door, "door"))
    kind = _BY_SUFFIX.get(rest)
    if kind is None:
        raise WireError(MALFORMED, f"unknown topic kind {rest!r} in {name!r}")
    return Topic(site, kind)


def site_acl_patterns() -> list[tuple[str, str]]:
    """Mosquitto ``pattern`` ACL entries (access, topic with %u = site id) of PROTOCOL.md §2."""
    def pat(kind: Kind) -> str:
        return site_filter(kind).replace(f"{ROOT}/+/", f"{ROOT}/%u/", 1)

    return [("write", pat(k)) for k in SITE_WRITES] + [("read", pat(k)) for k in SITE_READS]
