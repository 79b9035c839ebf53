"""The OpenAPI 3.1 document of the hub's HTTP API (served at ``/api/v1/openapi.json``).

Hand-written: Starlette's schema generator needs YAML docstrings (and PyYAML), and the
document is small. ``tests/hub/test_dashboard_api.py`` checks that it lists exactly the
routes the app serves.
"""

from __future__ import annotations

from typing import Any

_SITE = {"name": "site", "in": "path", "required": True, "schema": {"type": "string"}}
_JSON = {"application/json": {"schema": {"type": "object"}}}
_ARRAY = {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}


def _get(summary: str, description: str, params: list[dict[str, Any]] | None = None, *,
         array: bool = False) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "description": description, "parameters": params or [],
        "responses": {"200": {"description": "OK", "content": _ARRAY if array else _JSON},
                      "401": {"description": "not logged in"}, "404": {"description": "no such site (or not yours)"}},
    }}


def _q(name: str, description: str, type_: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": {"type": type_}}


_POST_RESPONSES = {
    "202": {"description": "sent to the site", "content": _JSON},
    "400": {"description": "bad parameters"},
    "401": {"description": "not logged in"},
    "403": {"description": "missing CSRF token, or the role may not do this"},
    "404": {"description": "no such site (or not yours)"},
    "503": {"description": "the hub is not connected to the broker"},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Torwart hub API", "version": "1",
        "description": (
            "The JSON API behind the caretakers' dashboard. Authenticate with the session cookie of a "
            "dashboard login (POST requests also need the session's CSRF token in the X-CSRF-Token header; "
            "GET /api/v1/me returns it) or with the admin token (Authorization: Bearer …, "
            "[http] admin_token_file). Admins see every site and members' names and may do every action; "
            "caretakers see their own sites (others answer 404), counts instead of names unless the site "
            "has show_names = true, and may unlock a door and check everybody out. Times are Unix seconds."
        ),
    },
    "components": {"securitySchemes": {
        "session": {"type": "apiKey", "in": "cookie", "name": "torwart_session"},
        "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
        "adminToken": {"type": "http", "scheme": "bearer"},
    }},
    "security": [{"session": []}, {"adminToken": []}],
    "paths": {
        "/api/v1/me": _get("The caller", "Name, role, visible sites, allowed actions and the CSRF token."),
        "/api/v1/sites": _get("Sites", "Every site the caller may see: online state and since when, cache "
                              "published vs applied, clock trust, rooms with occupancy, doors with alarms.",
                              array=True),
        "/api/v1/sites/{site}": _get("One site", "The site's snapshot including its last events.", [_SITE]),
        "/api/v1/sites/{site}/rooms": _get("Rooms", "present, capacity, full; `who` (names) for admins or "
                                           "where the site shows names.", [_SITE], array=True),
        "/api/v1/sites/{site}/doors": _get("Doors", "locked, open (null without a contact), alarm "
                                           "(held_open, forced_open), mode.", [_SITE], array=True),
        "/api/v1/sites/{site}/noshows": _get(
            "Booked vs present", "Per room and local day: confirmed bookings that started, and how many of "
            "them were checked in to.", [_SITE, _q("days", "days back including today (1..60, default 7)",
                                                   "integer")], array=True),
        "/api/v1/events": _get("Events", "Events of the caller's sites, newest first.", [
            _q("site", "one site"), _q("type", "an event type, e.g. access.denied"),
            _q("since", "Unix seconds or ISO 8601 (inclusive)"), _q("until", "Unix seconds or ISO 8601 (exclusive)"),
            _q("limit", "1..1000, default 100", "integer")], array=True),
        "/api/v1/live": {"get": {
            "summary": "Live changes (Server-Sent Events)",
            "description": "An `event: site` whenever a site's status, doors, occupancy, events or cache change "
                           "(first once for every site). `view=json`: the site's snapshot as data; `card`/`detail`: "
                           "{site, html} for the dashboard's pages. `event: logout` when the session ended.",
            "parameters": [_q("site", "one site (default: every site the caller sees)"),
                           _q("view", "json (default), card or detail")],
            "responses": {"200": {"description": "the stream", "content": {"text/event-stream": {}}},
                          "401": {"description": "not logged in"}, "404": {"description": "no such site"}},
        }},
        "/api/v1/sites/{site}/push": {"post": {
            "summary": "Push the full cache", "description": "Rebuild and publish the site's cache.full (admins).",
            "parameters": [_SITE], "security": [{"session": [], "csrf": []}, {"adminToken": []}],
            "responses": _POST_RESPONSES,
        }},
        "/api/v1/sites/{site}/commands": {"post": {
            "summary": "Send a signed command",
            "description": "unlock (door, seconds ≤ 3600; admins and caretakers; 409 while the site is in "
                           "lockdown), checkout_all (room optional; admins and "
                           "caretakers), lockdown, lockdown_end, enroll (reader, seconds ≤ 120) (admins).",
            "parameters": [_SITE], "security": [{"session": [], "csrf": []}, {"adminToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["action"],
                "properties": {
                    "action": {"enum": ["unlock", "lockdown", "lockdown_end", "checkout_all", "enroll"]},
                    "door": {"type": "string"}, "seconds": {"type": "integer", "minimum": 1, "maximum": 3600},
                    "room": {"type": "string"}, "reader": {"type": "string"},
                }}}}},
            "responses": {**_POST_RESPONSES, "409": {"description": "unlock refused: the site is in lockdown"}},
        }},
        "/api/v1/sites/{site}/enroll": {"post": {
            "summary": "Enroll a card at the site",
            "description": "Admins. Records a pending enrollment and sends the signed enroll command: the next card "
                           "read at `reader` within `seconds` is enrolled to `member` (who must exist). Answers "
                           "{id}; follow it with GET /api/v1/enrollments/{id}.",
            "parameters": [_SITE], "security": [{"session": [], "csrf": []}, {"adminToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["member", "reader"],
                "properties": {
                    "member": {"type": "string"}, "reader": {"type": "string"},
                    "seconds": {"type": "integer", "minimum": 1, "maximum": 120, "default": 60},
                }}}}},
            "responses": _POST_RESPONSES,
        }},
        "/api/v1/enrollments/{id}": _get(
            "An enrollment's state", "Admins. `state`: sent, acknowledged, read, enrolled, pushed, held (the site "
            "applied the cache with the card), refused (`code`: the site's error code, or conflict) or expired; "
            "`final` when nothing more will change.",
            [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]),
        "/api/v1/openapi.json": _get("This document", "The OpenAPI document (needs a login too)."),
    },
}
