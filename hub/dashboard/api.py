"""The JSON API behind the dashboard (``/api/v1``), and its live stream (SSE).

Every endpoint takes the session cookie (POSTs also the ``X-CSRF-Token`` header) or the
admin bearer token (``Authorization: Bearer …``). A site the caller may not see answers
404 everywhere, the live stream included. The OpenAPI document (``openapi.json``) lists
every endpoint with its parameters.
"""

from __future__ import annotations

import datetime as dt
import functools
import json as jsonlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from . import actions, enroll
from .auth import CSRF_HEADER, PERMISSIONS, Auth, Principal
from .common import SECURITY_HEADERS, error, json, on_loop
from .openapi import OPENAPI
from .render import fragment, lang_of

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
MAX_EVENTS = 1000

Handler = Callable[[Request, Principal], Awaitable[Response]]


def _time(text: str | None, what: str) -> float | None:
    """Unix seconds or ISO 8601 (local time without an offset); ValueError otherwise."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what}: not Unix seconds or ISO 8601: {text!r}") from None
    return (t if t.tzinfo is not None else t.astimezone()).timestamp()


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request's body as a JSON object, or the 400 answer to send instead."""
    try:
        doc = await request.json()
    except ValueError:
        return error(400, "the body must be a JSON object")
    if not isinstance(doc, dict):
        return error(400, "the body must be a JSON object")
    return doc


class Api:
    def __init__(self, hub: Hub, auth: Auth) -> None:
        self.hub = hub
        self.auth = auth
        self.cfg = hub.cfg

    def guard(self, handler: Handler, *, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate (401), check CSRF on POST with a session (403), then run ``handler``."""
        async def endpoint(request: Request) -> Response:
            p = await self.auth.principal(request)
            if p is None:
                return error(401, "log in (session cookie) or send the admin token (Authorization: Bearer)",
                             {"WWW-Authenticate": 'Bearer realm="torwart"'})
            if post and not p.csrf_ok(request.headers.get(CSRF_HEADER)):
                return error(403, "missing or wrong CSRF token (X-CSRF-Token header; see GET /api/v1/me)")
            return await handler(request, p)

        endpoint.__doc__ = handler.__doc__
        endpoint.__name__ = handler.__name__
        return endpoint

    def _names(self, p: Principal, site: str) -> bool:
        return p.admin or self.cfg.site(site).show_names

    def _visible(self, p: Principal) -> list[str]:
        return [s.id for s in self.cfg.sites if p.may_see(s.id)]

    def _site(self, request: Request, p: Principal) -> str | None:
        site: str = request.path_params["site"]
        return site if site in self._visible(p) else None

    # --- reading ----------------------------------------------------------------------------------

    async def openapi(self, request: Request, p: Principal) -> Response:
        """The OpenAPI 3.1 document of this API."""
        return json(OPENAPI)

    async def me(self, request: Request, p: Principal) -> Response:
        """The caller: name, role, sites, what it may do, and the CSRF token for POSTs."""
        return json({"name": p.name, "role": p.role, "sites": self._visible(p), "csrf": p.csrf,
                     "actions": sorted(PERMISSIONS.get(p.role, ()))})

    async def sites(self, request: Request, p: Principal) -> Response:
        """Every site the caller may see, with state, caches, rooms and doors."""
        visible = self._visible(p)
        names = {s: self._names(p, s) for s in visible}
        now = time.time()
        return json(await on_loop(self.hub, lambda: [
            self.hub.summary(s, names=names[s], now=now) for s in visible]))

    async def _snapshot(self, request: Request, p: Principal, part: str | None = None) -> Response:
        site = self._site(request, p)
        if site is None:
            return error(404, f"no site {request.path_params['site']!r}")
        names, now = self._names(p, site), time.time()
        snap = await on_loop(self.hub, lambda: self.hub.snapshot(
            site, names=names, now=now, events=0 if part else 12))
        return json(snap if part is None else snap[part])

    async def site(self, request: Request, p: Principal) -> Response:
        """One site: state, caches, rooms with occupancy, doors, last events."""
        return await self._snapshot(request, p)

    async def rooms(self, request: Request, p: Principal) -> Response:
        """A site's rooms with present/capacity (and who, where names are allowed)."""
        return await self._snapshot(request, p, "rooms")

    async def doors(self, request: Request, p: Principal) -> Response:
        """A site's doors: locked, open, alarm, mode."""
        return await self._snapshot(request, p, "doors")

    async def noshows(self, request: Request, p: Principal) -> Response:
        """Per room and day: confirmed bookings vs those checked in to (``days``, default 7)."""
        site = self._site(request, p)
        if site is None:
            return error(404, f"no site {request.path_params['site']!r}")
        try:
            days = int(request.query_params.get("days", "7"))
        except ValueError:
            return error(400, "days must be a whole number")
        if not 1 <= days <= 60:
            return error(400, "days must be 1..60")
        now = time.time()
        return json(await on_loop(self.hub, lambda: self.hub.noshows(site, now, days)))

    async def events(self, request: Request, p: Principal) -> Response:
        """Events, newest first; filters: site, type, since, until (Unix s or ISO 8601), limit."""
        q = request.query_params
        visible = self._visible(p)
        site = q.get("site")
        if site is not None and site not in visible:
            return error(404, f"no site {site!r}")
        try:
            since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
            limit = int(q.get("limit", "100"))
        except ValueError as exc:
            return error(400, str(exc))
        if not 1 <= limit <= MAX_EVENTS:
            return error(400, f"limit must be 1..{MAX_EVENTS}")
        sites: list[str] | None = [site] if site else (None if p.sites is None else visible)
        names = {s.id: self._names(p, s.id) for s in self.cfg.sites}
        rows = await on_loop(self.hub, lambda: self.hub.event_views(
            sites, type=q.get("type"), since=since, until=until, limit=limit, names_for=names))
        return json(rows)

    # --- acting ------------------------------------------------------------------------------------

    async def push(self, request: Request, p: Principal) -> Response:
        """Rebuild and publish the site's full cache now (admins)."""
        out = await actions.perform(self.hub, p, request.path_params["site"], "push", {})
        return json(out.doc, out.status)

    async def command(self, request: Request, p: Principal) -> Response:
        """Send a signed command: ``{"action": ..., "door", "seconds", "room", "reader"}``."""
        doc = await _json_object(request)
        if isinstance(doc, Response):
            return doc
        out = await actions.perform(self.hub, p, request.path_params["site"], str(doc.get("action")), doc)
        return json(out.doc, out.status)

    async def enroll(self, request: Request, p: Principal) -> Response:
        """Enroll a card at the site (admins): ``{"member", "reader", "seconds" ≤ 120}``; the
        next card read at that reader is enrolled to the member. Answers ``{"id": ...}``."""
        doc = await _json_object(request)
        if isinstance(doc, Response):
            return doc
        out = await enroll.start(self.hub, p, request.path_params["site"], doc)
        return json(out.doc, out.status)

    async def enrollment(self, request: Request, p: Principal) -> Response:
        """An enrollment's state: sent, acknowledged, read, enrolled, pushed, held, refused
        (``code``) or expired (admins)."""
        out = await enroll.status(self.hub, p, request.path_params["id"])
        return json(out.doc, out.status)

    # --- live ----------------------------------------------------------------------------------------

    async def live(self, request: Request, p: Principal) -> Response:
        """Server-Sent Events: ``site`` events with a site's snapshot (``view=json``) or its
        rendered HTML (``view=card`` / ``detail``) on every change, for one ``site`` or every
        site the caller may see."""
        q = request.query_params
        view = q.get("view", "json")
        if view not in ("json", "card", "detail"):
            return error(400, "view must be json, card or detail")
        visible = self._visible(p)
        site = q.get("site")
        if site is not None and site not in visible:
            return error(404, f"no site {site!r}")
        sites = [site] if site else visible
        names = {s: self._names(p, s) for s in sites}
        lang = lang_of(request)

        def read(changed: list[str]) -> list[dict[str, Any]]:
            now = time.time()
            events = 12 if view != "card" else 0
            return [self.hub.snapshot(s, names=names[s], now=now, events=events) for s in changed]

        def frame(snap: dict[str, Any]) -> str:
            if view == "json":
                doc: dict[str, Any] = snap
            else:
                name = "_site_card.html" if view == "card" else "_site_live.html"
                doc = {"site": snap["id"], "html": fragment(name, lang, s=snap)}
            return f"event: site\ndata: {jsonlib.dumps(doc, separators=(',', ':'))}\n\n"

        async def stream() -> AsyncIterator[str]:
            # Subscribed here, not in the handler: a client gone before the stream starts
            # leaves no subscription behind. Before the first read, so no change is lost.
            sub = self.hub.subscribe(sites)
            try:
                yield "retry: 2000\n\n"
                changed = list(sites)
                while not sub.closed:
                    if not await self.auth.still_valid(p):
                        yield "event: logout\ndata: {}\n\n"
                        return
                    if changed:
                        for snap in await on_loop(self.hub, functools.partial(read, changed)):
                            yield frame(snap)
                    else:
                        yield ": keepalive\n\n"
                    changed = sorted(await sub.changed(KEEPALIVE_SECONDS))
            finally:
                sub.close()

        headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
