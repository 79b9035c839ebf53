"""The OpenAPI 3.1 document of the hub's JSON API (served at ``/api/v1/openapi.json``),
generated from the route table and the types of ``hub.dashboard.model``.

:data:`OPERATIONS` says, per (method, path), what an operation is for, what it takes (a
body type, a query type) and what it answers (a type per status); the schemas are
msgspec's JSON Schema of those types. :func:`document` walks the routes the app serves:
a route under ``/api/v1`` without an entry, or an entry without a route, is an error, so
the document cannot drift from the app (``tests/hub/test_openapi_fuzz.py`` fuzzes the live
hub against it with schemathesis).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.routing import BaseRoute, Route

from ..core import pages as pg
from . import alertmodel as al
from . import model as t

API_PREFIX = "/api/v1"
_REF = "#/components/schemas/{name}"

#: What the refusals mean, per status.
_ERRORS = {
    400: "bad parameters (the message names the field)",
    401: "not logged in: no valid session cookie or admin token",
    403: "missing or wrong CSRF token (POSTs with a session), or the role may not do this",
    404: "no such site (or not one of the caller's), enrollment, member or alert",
    409: "refused as things stand: an unlock at a site in lockdown; Web Push not set up, or an 11th browser",
    413: "the request body is over 16 KiB",
    503: "the hub is not connected to the broker (or has no enrollment key)",
}
_READ = (401, 404)
_WRITE = (400, 401, 403, 404, 413, 503)


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented operation of the API."""

    summary: str
    description: str
    #: The answer's type (a Struct, ``list[...]``), a tuple of types (any of them), or
    #: None for a body without a schema (``media_type``).
    returns: Any
    status: int = 200
    body: type | None = None
    query: type | None = None
    errors: tuple[int, ...] = _READ
    media_type: str = "application/json"
    #: Extra answers: status → description (no body).
    extra: dict[int, str] = field(default_factory=dict)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/api/v1/openapi.json"): Operation(
        "This document", "The OpenAPI document (needs a login too).", dict[str, Any], errors=(401,)),
    ("GET", "/api/v1/me"): Operation(
        "The caller", "Name, role, visible sites, allowed actions and the CSRF token.", t.Me, errors=(401,)),
    ("GET", "/api/v1/sites"): Operation(
        "Sites", "Every site the caller may see: online state and since when, cache published vs applied, clock "
        "trust, rooms with occupancy, doors with alarms.", list[pg.SiteSummary], errors=(401,)),
    ("GET", "/api/v1/sites/{site}"): Operation(
        "One site", "The site's snapshot including its last events.", pg.SiteSnapshot),
    ("GET", "/api/v1/sites/{site}/rooms"): Operation(
        "Rooms", "present, capacity, full; `who` (names) for admins or where the site shows names.", list[pg.Room]),
    ("GET", "/api/v1/sites/{site}/doors"): Operation(
        "Doors", "locked, open (null without a contact), alarm (held_open, forced_open), mode.", list[pg.Door]),
    ("GET", "/api/v1/sites/{site}/noshows"): Operation(
        "Booked vs present", "Per room and local day: confirmed bookings that started, and how many of them were "
        "checked in to.", list[pg.NoshowRoom], query=t.NoshowsQuery, errors=(400, *_READ)),
    ("GET", "/api/v1/events"): Operation(
        "Events", "Events of the caller's sites, newest first.", list[pg.EventView], query=t.EventsQuery,
        errors=(400, *_READ)),
    ("GET", "/api/v1/live"): Operation(
        "Live changes (Server-Sent Events)",
        "An `event: site` whenever a site's status, doors, occupancy, events or cache change (first once for every "
        "site). `view=json`: the site's snapshot (SiteSnapshot) as data; `card`/`detail`: {site, html} "
        "(LiveFragment) for the dashboard's pages. `event: logout` when the session ended.",
        None, query=t.LiveQuery, errors=(400, *_READ), media_type="text/event-stream"),
    ("POST", "/api/v1/sites/{site}/push"): Operation(
        "Push the full cache", "Rebuild and publish the site's cache.full (admins).", t.Pushed, status=202,
        errors=(401, 403, 404, 503)),
    ("POST", "/api/v1/sites/{site}/commands"): Operation(
        "Send a signed command",
        "unlock (door, seconds ≤ 3600; admins and caretakers; 409 while the site is in lockdown), checkout_all "
        "(room optional; admins and caretakers), lockdown, lockdown_end, push, enroll (member, reader, "
        "seconds ≤ 120) (admins).",
        (t.CommandSent, t.Pushed, t.EnrollmentStarted), status=202, body=t.CommandBody, errors=(*_WRITE, 409)),
    ("POST", "/api/v1/sites/{site}/enroll"): Operation(
        "Enroll a card at the site",
        "Admins. Records a pending enrollment and sends the signed enroll command: the next card read at `reader` "
        "within `seconds` is enrolled to `member` (who must exist). Answers {id}; follow it with "
        "GET /api/v1/enrollments/{id}.",
        t.EnrollmentStarted, status=202, body=t.EnrollBody, errors=_WRITE),
    ("GET", "/api/v1/enrollments/{id}"): Operation(
        "An enrollment's state", "Admins (others 403).", t.EnrollmentView, errors=(401, 403, 404)),
    ("GET", "/api/v1/members/{member}/export"): Operation(
        "A member's data (access request)",
        "Admins (others 403). Everything the hub holds about the member: name, e-mail, pseudonym, credentials by "
        "type and fingerprint (a PIN only as set), grants, bookings, enrollments, events naming the pseudonym "
        "(within retention) and the sites whose caches hold the member.", dict[str, Any], errors=(401, 403, 404)),
    ("POST", "/api/v1/members/{member}/erase"): Operation(
        "Erase a member",
        "Admins (others 403). Deletes the member's name, e-mail, credentials, PINs, grants, enrollments and the "
        "hub's copies of their bookings at once, and publishes the new cache of every site that held them; "
        "GET /api/v1/sites shows when each site applied it. Events naming the pseudonym stay until retention.",
        t.Erased, errors=(401, 403, 404)),
    ("GET", "/api/v1/alerts"): Operation(
        "Alerts", "Open and resolved alerts of the caller's sites (those of the hub itself, site \"\", for users "
        "who see every site), newest first: kind, door or reader, when opened and resolved, who acknowledged "
        "it, reminders and escalation.", list[pg.AlertView], query=al.AlertsQuery, errors=(400, *_READ)),
    ("POST", "/api/v1/alerts/{alert}/ack"): Operation(
        "Acknowledge an alert",
        "Admins, and caretakers for their own sites. Records who and when (the first acknowledgement stands) and "
        "stops the alert's reminders and escalation; it stays open until what it is about clears.",
        pg.AlertView, errors=(401, 403, 404)),
    ("GET", "/api/v1/me/alerts"): Operation(
        "My alert settings", "What the caller hears about, how, in which language, and its quiet hours "
        "(403 for the admin token, which has no user).", al.AlertSettings, errors=(401, 403)),
    ("POST", "/api/v1/me/alerts"): Operation(
        "Change my alert settings", "Replaces them; answers them as stored (403 for the admin token).",
        al.AlertSettings, body=al.AlertSettingsBody, errors=(400, 401, 403, 413)),
    ("GET", "/api/v1/me/push"): Operation(
        "My browsers for Web Push", "The hub's VAPID public key (the applicationServerKey to subscribe with; "
        "null: Web Push is not set up) and the browsers the caller subscribed (403 for the admin token).",
        al.PushState, errors=(401, 403)),
    ("POST", "/api/v1/me/push"): Operation(
        "Subscribe this browser", "Keeps a browser's PushSubscription for the caller's alerts (channel push); "
        "400 for one that cannot work, 409 beyond 10 browsers or without a VAPID key.",
        al.PushState, status=201, body=al.PushSubscribeBody, errors=(400, 401, 403, 409, 413)),
    ("DELETE", "/api/v1/me/push"): Operation(
        "Forget a browser", "Removes one of the caller's browsers by its endpoint (404: not one of them).",
        al.PushState, body=al.PushUnsubscribeBody, errors=(400, 401, 403, 404, 413)),
}

_DESCRIPTION = (
    "The JSON API behind the caretakers' dashboard. Authenticate with the session cookie of a dashboard login "
    "(POST requests also need the session's CSRF token in the X-CSRF-Token header; GET /api/v1/me returns it) "
    "or with the admin token (Authorization: Bearer …, [http] admin_token_file). Admins see every site and "
    "members' names and may do every action; caretakers see their own sites (others answer 404), counts instead "
    "of names unless the site has show_names = true, and may unlock a door and check everybody out. Times are "
    "Unix seconds. Every refusal is {\"error\": message}."
)


def _api_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    out = []
    for r in routes:
        if isinstance(r, Route) and r.path.startswith(API_PREFIX):
            out += [(m, r.path) for m in sorted(r.methods or ()) if m != "HEAD"]
    return out


def _types(ops: Iterable[Operation]) -> list[Any]:
    types: list[Any] = [t.Error]
    for op in ops:
        returns = op.returns if isinstance(op.returns, tuple) else (op.returns,)
        types += [x for x in (*returns, op.body) if x is not None]
    return types


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _absent_not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: ``X | None = None`` means "may be left out" (a query
    string has no null), so the schema is X's."""
    options = prop.get("anyOf")
    if prop.get("default", 0) is None and options and {"type": "null"} in options and len(options) == 2:
        other = next(o for o in options if o != {"type": "null"})
        return {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **other}
    return prop


def _parameters(path: str, query: type | None, sites: Sequence[str]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in ("site", "id", "member", "alert"):
        if "{" + name + "}" in path:
            p: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            if name == "site":
                p["description"] = "a site's id"
                if sites:
                    p["examples"] = {s: {"value": s} for s in sites}
            elif name == "member":
                p["description"] = "the member's id on the booking platform"
            elif name == "alert":
                p["description"] = "the alert's id"
                p["schema"] = {"type": "integer", "minimum": 1}
            else:
                p["description"] = "the enrollment's id (its command's id)"
            params.append(p)
    if query is not None:
        schema = msgspec.json.schema_components([query])[1][query.__name__]
        required = set(schema.get("required", ()))
        for name, raw in schema["properties"].items():
            prop = _absent_not_null(raw)
            param = {"name": name, "in": "query", "required": name in required,
                     "schema": {k: v for k, v in prop.items() if k != "description"}}
            if prop.get("description"):
                param["description"] = prop["description"]
            if name == "site" and sites:
                param["examples"] = {s: {"value": s} for s in sites}
            params.append(param)
    return params


def document(routes: Iterable[BaseRoute], *, sites: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI document of the ``/api/v1`` routes among ``routes``; ``sites`` are
    offered as examples of the ``site`` parameter (the caller's own)."""
    served = _api_routes(routes)
    missing = [key for key in served if key not in OPERATIONS]
    stale = [key for key in OPERATIONS if key not in served]
    if missing or stale:
        raise RuntimeError(f"the API document and the routes differ: undocumented {missing}, not served {stale}")
    ops = [OPERATIONS[key] for key in served]
    types = _types(ops)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = {repr(tp): s for tp, s in zip(types, schemas, strict=True)}
    error = _content(schema_of[repr(t.Error)])
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in zip(served, ops, strict=True):
        returns = op.returns if isinstance(op.returns, tuple) else (op.returns,)
        if returns == (None,):
            ok: dict[str, Any] = {op.media_type: {}}
        elif len(returns) == 1:
            ok = _content(schema_of[repr(returns[0])])
        else:
            ok = _content({"anyOf": [schema_of[repr(x)] for x in returns]})
        responses: dict[str, Any] = {str(op.status): {"description": "OK" if op.status == 200 else "accepted",
                                                      "content": ok}}
        for status in sorted(op.errors):
            responses[str(status)] = {"description": _ERRORS[status], "content": error}
        if 401 in op.errors:
            responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        entry: dict[str, Any] = {
            "operationId": f"{method.lower()}_{path.removeprefix(API_PREFIX + '/')}".replace("/", "_")
            .replace("{", "").replace("}", "").replace(".", "_"),
            "summary": op.summary, "description": op.description,
            "parameters": _parameters(path, op.query, sites), "responses": responses,
        }
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": _content(schema_of[repr(op.body)])}
        if method != "GET":
            entry["security"] = [{"session": [], "csrf": []}, {"adminToken": []}]
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Torwart hub API", "version": "1", "description": _DESCRIPTION},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "torwart_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}, {"adminToken": []}],
        "paths": paths,
    }
