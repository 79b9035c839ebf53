"""The ``[[sites]]`` of hub.toml (hub.config loads them with the rest): sites, their rooms,
doors and platform resources, and the cross-checks between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import msgspec
from msgspec import Meta, Struct, field

from wire.fields import Ident

from .errors import ConfigError

ResourceId = Annotated[str, Meta(min_length=1, max_length=256)]
#: A calendar feed; ``file://`` serves demos and tests.
FeedUrl = Annotated[str, Meta(pattern=r"^(https?|file)://\S+$")]


class RoomConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Ident
    name: str = ""
    capacity: Annotated[int, Meta(ge=0)] | None = None
    #: Platform resource ids whose bookings are bookings of this room.
    resources: list[ResourceId] = field(default_factory=list)
    #: The doors a booking of this room opens.
    doors: Annotated[list[Ident], Meta(min_length=1)]
    ics_url: FeedUrl | None = None


class SiteConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Ident
    name: str = ""
    cred_key_file: str
    #: All doors of the site (what a standing grant without doors opens); default: the
    #: union of its rooms' doors.
    doors: list[Ident] = field(default_factory=list)
    no_show_minutes: Annotated[int, Meta(ge=1, le=1440)] | None = None
    #: Show caretakers the names of who is in (admins always see them); otherwise
    #: caretakers see counts only.
    show_names: bool = False
    rooms: list[RoomConfig] = field(default_factory=list)

    def room(self, room_id: str) -> RoomConfig:
        return next(r for r in self.rooms if r.id == room_id)


def check_sites(given: list[SiteConfig], f: str, *, broker_user: str, client_id: str,
                room_resource: Callable[[str, str], str] | None) -> list[SiteConfig]:
    """The sites with their defaults filled in (every site's doors, every room's resources:
    ``room_resource`` gives a room without any its adapter's synthetic one, e.g. ICS);
    ConfigError (file ``f``) for a site, room, door or resource that contradicts another,
    or a site id the hub's broker login or client id would clash with."""
    err = ConfigError
    seen_sites: set[str] = set()
    owner: dict[str, str] = {}
    sites: list[SiteConfig] = []
    for i, s in enumerate(given):
        key = f"sites[{i}]"
        if s.id in seen_sites:
            raise err(f, f"{key}.id", f"site {s.id!r} is configured twice")
        if s.id == broker_user:
            raise err(f, f"{key}.id", f"site id {s.id!r} is the hub's own broker user name ([mqtt] username): "
                      "the broker would give that site the hub's rights over every site")
        cid = client_id
        if s.id == cid or s.id.startswith(cid + "-"):
            raise err(f, f"{key}.id", f"site id {s.id!r} is a client id of the hub ([mqtt] client_id {cid!r}, "
                      f"and {cid!r}-... for its command line): the broker gives each site its id as client id, "
                      "so that site would throw the hub off")
        seen_sites.add(s.id)
        rooms: list[RoomConfig] = []
        room_ids: set[str] = set()
        for j, room in enumerate(s.rooms):
            rkey = f"{key}.rooms[{j}]"
            if room.id in room_ids:
                raise err(f, f"{rkey}.id", f"room {room.id!r} appears twice in site {s.id!r}")
            room_ids.add(room.id)
            if len(set(room.doors)) != len(room.doors):
                raise err(f, f"{rkey}.doors", "a door is listed twice")
            if s.doors:
                missing = [d for d in room.doors if d not in s.doors]
                if missing:
                    raise err(f, f"{rkey}.doors", f"door {missing[0]!r} is not in the site's doors")
            resources = list(room.resources)
            if not resources:
                if room_resource is None:
                    raise err(
                        f, f"{rkey}.resources",
                        "no platform resource is mapped to this room, so no booking can open its doors",
                    )
                resources = [room_resource(s.id, room.id)]
            for k, res in enumerate(resources):
                where = f"site {s.id!r} room {room.id!r}"
                if res in owner:
                    raise err(f, f"{rkey}.resources[{k}]", f"resource {res!r} is already mapped to {owner[res]}")
                owner[res] = where
            rooms.append(msgspec.structs.replace(room, resources=resources))
        doors = list(s.doors)
        if len(set(doors)) != len(doors):
            raise err(f, f"{key}.doors", "a door is listed twice")
        if not doors:
            doors = list(dict.fromkeys(d for room in rooms for d in room.doors))
        sites.append(msgspec.structs.replace(s, doors=doors, rooms=rooms))
    return sites
