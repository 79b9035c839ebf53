"""The dashboard's data as msgspec types: what the JSON API takes (bodies, query strings)
and what it and the pages show (page data). The OpenAPI document (``hub.dashboard.openapi``)
is generated from these types, and request parsing goes through :func:`parse`, so that
what is documented is what is accepted and what is answered.

Request types ignore unknown fields (the page's script sends its form as it is); whole
numbers may also come as strings (``"5"``), as a query string or a form has them. Anything
else that does not fit is a :class:`BadRequest` with a message that names the field and,
for a bounded number or a choice, the allowed values.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from ..alerts.settings import AlertKind
from ..commands import MAX_UNLOCK_SECONDS
from ..enroll import MAX_SECONDS as MAX_ENROLL_SECONDS
from ..errors import HubError

T = TypeVar("T")

#: The most events one ``GET /api/v1/events`` answers.
MAX_EVENTS = 1000
#: The most days the booked-vs-present chart goes back.
MAX_DAYS = 60

#: A name given in a request: a site's door, room or reader, a member id.
Name = Annotated[str, Meta(min_length=1, max_length=256)]
ActionName = Literal["push", "unlock", "lockdown", "lockdown_end", "checkout_all", "enroll"]


class BadRequest(HubError):
    """A request body or query string that does not fit its type (answered 400)."""


# --- requests -----------------------------------------------------------------------------------


class CommandBody(Struct, kw_only=True):
    """``POST /api/v1/sites/{site}/commands``: what to make the site do."""

    action: Annotated[ActionName, Meta(description="push, unlock, lockdown, lockdown_end, checkout_all or enroll")]
    door: Annotated[Name, Meta(description="unlock: the door")] | None = None
    seconds: Annotated[int, Meta(ge=1, le=MAX_UNLOCK_SECONDS, description="unlock: how long (enroll: ≤ 120)")] \
        | None = None
    room: Annotated[Name, Meta(description="checkout_all: one room (default: every room)")] | None = None
    reader: Annotated[Name, Meta(description="enroll: the reader")] | None = None
    member: Annotated[Name, Meta(description="enroll: the member the card is for")] | None = None


class EnrollBody(Struct, kw_only=True):
    """``POST /api/v1/sites/{site}/enroll``: the next card read at ``reader`` within
    ``seconds`` is enrolled to ``member``."""

    member: Annotated[Name, Meta(description="the member's id (must exist)")]
    reader: Annotated[Name, Meta(description="the site's reader")]
    seconds: Annotated[int, Meta(ge=1, le=MAX_ENROLL_SECONDS, description="the site's window for the card")] = 60


class EventsQuery(Struct, kw_only=True):
    """``GET /api/v1/events``: filters."""

    site: Annotated[str, Meta(description="one site")] | None = None
    type: Annotated[str, Meta(description="an event type, e.g. access.denied")] | None = None
    since: Annotated[str, Meta(description="Unix seconds or ISO 8601 (inclusive)")] | None = None
    until: Annotated[str, Meta(description="Unix seconds or ISO 8601 (exclusive)")] | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_EVENTS, description="the most events to answer")] = 100


class NoshowsQuery(Struct, kw_only=True):
    """``GET /api/v1/sites/{site}/noshows``."""

    days: Annotated[int, Meta(ge=1, le=MAX_DAYS, description="days back including today")] = 7


class LiveQuery(Struct, kw_only=True):
    """``GET /api/v1/live``."""

    site: Annotated[str, Meta(description="one site (default: every site the caller sees)")] | None = None
    view: Annotated[Literal["json", "card", "detail", "alerts"],
                    Meta(description="json: the snapshot; card, detail, alerts: {site, html} for the pages")] = "json"
    lang: Annotated[str, Meta(description="de or en, for card and detail (default: the lang cookie, de)")] \
        | None = None
    kind: Annotated[AlertKind | Literal[""], Meta(description="alerts: one alert kind (empty: every kind)")] = ""
    state: Annotated[Literal["open", "all"], Meta(description="alerts: open only, or also resolved")] = "all"


class LoginForm(Struct, kw_only=True):
    """``POST /login``: the form as sent (``csrf``: the login form's double-submit token)."""

    name: str = ""
    password: str = ""
    csrf: str = ""
    next: str = "/"


class ActionForm(Struct, kw_only=True):
    """``POST /sites/{site}/actions`` (the no-JavaScript confirm step): the form as sent."""

    action: str = ""
    door: str = ""
    seconds: str = ""
    room: str = ""
    reader: str = ""
    member: str = ""
    confirmed: str = ""

    def params(self) -> dict[str, str]:
        """The action's parameters, as ``hub.dashboard.actions`` takes them."""
        return {"door": self.door, "seconds": self.seconds, "room": self.room, "reader": self.reader,
                "member": self.member}


_AT = re.compile(r" - at `\$\.([A-Za-z_]\w*)`$")


def _hint(cls: type[Any], field: str) -> str | None:
    """"seconds must be 1..3600" or "view must be one of json, card, detail" for a field
    with bounds or choices; None for others."""
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType):
        return None
    for f in info.fields:
        if f.encode_name != field:
            continue
        ft = f.type.type if isinstance(f.type, msgspec.inspect.Metadata) else f.type
        types = ft.types if isinstance(ft, msgspec.inspect.UnionType) else (ft,)
        for member in types:
            t = member.type if isinstance(member, msgspec.inspect.Metadata) else member
            if isinstance(t, msgspec.inspect.IntType) and t.ge is not None and t.le is not None:
                return f"{field} must be {t.ge}..{t.le}"
            if isinstance(t, msgspec.inspect.LiteralType):
                return f"{field} must be one of {', '.join(map(str, t.values))}"
    return None


def parse(doc: object, cls: type[T], *, what: str = "the body") -> T:
    """``doc`` (decoded JSON, a form or a query string as a dict) as a ``cls``; BadRequest
    with a clear message otherwise."""
    if not isinstance(doc, dict):
        raise BadRequest(f"{what} must be a JSON object")
    try:
        return msgspec.convert(doc, cls, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = _AT.search(message)
        hint = _hint(cls, at.group(1)) if at is not None else None
        raise BadRequest(f"{hint} ({message})" if hint else f"{what}: {message}") from None


def parse_json(raw: bytes, cls: type[T]) -> T:
    """A JSON request body as a ``cls`` (see :func:`parse`)."""
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("the body must be a JSON object") from None
    return parse(doc, cls)


# --- answers --------------------------------------------------------------------------------------


class Error(Struct):
    """Every refusal: what went wrong, for people."""

    error: str


class Me(Struct, kw_only=True):
    """The caller: name, role, the sites it sees, what it may do, and the CSRF token for
    POSTs made with its session (null for the admin token)."""

    name: str
    role: Literal["admin", "caretaker"]
    sites: list[str]
    csrf: str | None
    actions: list[ActionName]


class Pushed(Struct, kw_only=True):
    """The site's full cache was rebuilt and published."""

    site: str
    action: Literal["push"]
    published_version: int


class Erased(Struct, kw_only=True):
    """A member was erased: rows deleted per table, and each site whose cache held them
    with its new version (published as the retained cache.full)."""

    member: str
    deleted: dict[str, int]
    sites: dict[str, int | None]


class CommandSent(Struct, kw_only=True):
    """The signed command went out to the site (``id``: the command's id)."""

    site: str
    id: str
    action: str


class EnrollmentStarted(Struct, kw_only=True):
    """A pending enrollment was recorded and its command sent; follow it by ``id``."""

    id: str
    site: str
    member: str
    reader: str
    seconds: int


class EnrollmentView(Struct, kw_only=True):
    """An enrollment's state: sent, acknowledged, read, enrolled, pushed, held (the site
    applied the cache with the card), refused (``code``: the site's error code, or
    conflict) or expired; ``final`` when nothing more will change."""

    id: str
    site: str
    member: str
    reader: str
    seconds: int | None
    state: Literal["sent", "acknowledged", "read", "enrolled", "pushed", "held", "refused", "expired"]
    code: str | None
    detail: str | None
    final: bool
    cache_version: int | None
    window_ends_at: float | None
    created_at: float


class LiveFragment(Struct, kw_only=True):
    """A live ``site`` event's data for ``view=card`` or ``detail``: the site's rendered HTML."""

    site: str
    html: str


def parse_time(text: str | None, what: str, *, end: bool = False) -> float | None:
    """A time in a query: Unix seconds or ISO 8601 (local time without an offset); None
    when empty. A bare date as the ``end`` of a range means the next midnight (through
    that day). BadRequest otherwise."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise BadRequest(f"{what}: not a time: {text!r}")
        return value
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{what}: not Unix seconds or ISO 8601: {text!r}") from None
    if end and len(text) == 10:
        t += dt.timedelta(days=1)
    return (t if t.tzinfo is not None else t.astimezone()).timestamp()
