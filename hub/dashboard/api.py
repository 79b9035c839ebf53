"""The JSON API behind the dashboard (``/api/v1``), and its live stream (SSE).

Every endpoint takes the session cookie (POSTs also the ``X-CSRF-Token`` header) or the
admin bearer token (``Authorization: Bearer …``), checked before a handler runs
(``hub.dashboard.middleware.LoginGuard``); handlers get the caller. A site the caller may
not see answers 404 everywhere, the live stream included. Bodies and query strings are
parsed into the types of ``hub.dashboard.model`` (400 when they do not fit); the OpenAPI
document (``openapi.json``) is generated from those types (``hub.dashboard.openapi``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from ..core.pages import SiteSnapshot
from . import actions, enroll, members
from .auth import PERMISSIONS, Auth, Principal
from .common import error, json, on_loop
from .model import (
    BadRequest,
    CommandBody,
    EnrollBody,
    EventsQuery,
    LiveFragment,
    LiveQuery,
    Me,
    NoshowsQuery,
    parse,
    parse_json,
    parse_time,
)
from .openapi import document
from .render import fragment, lang_of

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0

Handler = Callable[[Request, Principal], Awaitable[Response]]


class Api:
    def __init__(self, hub: Hub, auth: Auth) -> None:
        self.hub = hub
        self.auth = auth
        self.cfg = hub.cfg
        #: The routes served (for the OpenAPI document; set by ``hub.dashboard.app``).
        self.routes: list[BaseRoute] = []

    def _names(self, p: Principal, site: str) -> bool:
        return p.admin or self.cfg.site(site).show_names

    def _visible(self, p: Principal) -> list[str]:
        return [s.id for s in self.cfg.sites if p.may_see(s.id)]

    def _site(self, request: Request, p: Principal) -> str | None:
        site: str = request.path_params["site"]
        return site if site in self._visible(p) else None

    # --- reading ----------------------------------------------------------------------------------

    async def openapi(self, request: Request, p: Principal) -> Response:
        """The OpenAPI 3.1 document of this API (the caller's sites as examples)."""
        return json(document(self.routes, sites=self._visible(p)))

    async def me(self, request: Request, p: Principal) -> Response:
        """The caller: name, role, sites, what it may do, and the CSRF token for POSTs."""
        return json(Me(name=p.name, role=p.role, sites=self._visible(p), csrf=p.csrf,  # type: ignore[arg-type]
                       actions=sorted(PERMISSIONS.get(p.role, ()))))  # type: ignore[arg-type]

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
        return json(snap if part is None else getattr(snap, part))

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
        days = parse(dict(request.query_params), NoshowsQuery, what="the query").days
        now = time.time()
        return json(await on_loop(self.hub, lambda: self.hub.noshows(site, now, days)))

    async def events(self, request: Request, p: Principal) -> Response:
        """Events, newest first; filters: site, type, since, until (Unix s or ISO 8601), limit."""
        q = parse(dict(request.query_params), EventsQuery, what="the query")
        visible = self._visible(p)
        site = q.site
        if site is not None and site not in visible:
            return error(404, f"no site {site!r}")
        try:
            since, until = parse_time(q.since, "since"), parse_time(q.until, "until")
        except BadRequest as exc:
            return error(400, str(exc))
        limit = q.limit
        sites: list[str] | None = [site] if site else (None if p.sites is None else visible)
        names = {s.id: self._names(p, s.id) for s in self.cfg.sites}
        rows = await on_loop(self.hub, lambda: self.hub.event_views(
            sites, type=q.type, since=since, until=until, limit=limit, names_for=names))
        return json(rows)

    # --- acting ------------------------------------------------------------------------------------

    async def push(self, request: Request, p: Principal) -> Response:
        """Rebuild and publish the site's full cache now (admins)."""
        out = await actions.perform(self.hub, p, request.path_params["site"], "push", {})
        return json(out.doc, out.status)

    async def command(self, request: Request, p: Principal) -> Response:
        """Send a signed command: ``{"action": ..., "door", "seconds", "room", "reader", "member"}``."""
        body = parse_json(await request.body(), CommandBody)
        # Fields not given are left out, as before typed bodies: each action keeps its own
        # default (an enroll's 60 s window; an unlock's door's unlock_seconds).
        doc = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
        out = await actions.perform(self.hub, p, request.path_params["site"], body.action, doc)
        return json(out.doc, out.status)

    async def enroll(self, request: Request, p: Principal) -> Response:
        """Enroll a card at the site (admins): ``{"member", "reader", "seconds" ≤ 120}``; the
        next card read at that reader is enrolled to the member. Answers ``{"id": ...}``."""
        doc = msgspec.structs.asdict(parse_json(await request.body(), EnrollBody))
        out = await enroll.start(self.hub, p, request.path_params["site"], doc)
        return json(out.doc, out.status)

    async def enrollment(self, request: Request, p: Principal) -> Response:
        """An enrollment's state: sent, acknowledged, read, enrolled, pushed, held, refused
        (``code``) or expired (admins)."""
        out = await enroll.status(self.hub, p, request.path_params["id"])
        return json(out.doc, out.status)

    async def member_export(self, request: Request, p: Principal) -> Response:
        """Everything the hub holds about a member, as ``torwart-hub members export`` (admins)."""
        out = await members.export(self.hub, p, request.path_params["member"])
        return json(out.doc, out.status)

    async def member_erase(self, request: Request, p: Principal) -> Response:
        """Erase a member, as ``torwart-hub members remove`` without waiting for the sites (admins)."""
        out = await members.erase(self.hub, p, request.path_params["member"])
        return json(out.doc, out.status)

    # --- live ----------------------------------------------------------------------------------------

    async def live(self, request: Request, p: Principal) -> Response:
        """Server-Sent Events: ``site`` events with a site's snapshot (``view=json``) or its
        rendered HTML (``view=card`` / ``detail``) on every change, for one ``site`` or every
        site the caller may see."""
        q = parse(dict(request.query_params), LiveQuery, what="the query")
        view = q.view
        visible = self._visible(p)
        site = q.site
        if site is not None and site not in visible:
            return error(404, f"no site {site!r}")
        sites = [site] if site else visible
        names = {s: self._names(p, s) for s in sites}
        lang = lang_of(request)

        def read(changed: list[str]) -> list[SiteSnapshot]:
            now = time.time()
            events = 12 if view not in ("card", "alerts") else 0
            return [self.hub.snapshot(s, names=names[s], now=now, events=events) for s in changed]

        def frame(snap: SiteSnapshot) -> str:
            if view == "json":
                doc: SiteSnapshot | LiveFragment = snap
            elif view == "alerts":  # the site's part of /alerts (hub.dashboard.alerts)
                shown = [a for a in snap.alerts if (not q.kind or a.kind == q.kind)
                         and (q.state == "all" or a.open)]
                doc = LiveFragment(site=snap.id, html=fragment(
                    "_site_alerts.html", lang, g={"id": snap.id, "name": snap.name, "alerts": shown},
                    next="/alerts", csrf=p.csrf))
            else:
                name = "_site_card.html" if view == "card" else "_site_live.html"
                doc = LiveFragment(site=snap.id, html=fragment(name, lang, s=snap, csrf=p.csrf))
            return f"event: site\ndata: {msgspec.json.encode(doc).decode()}\n\n"

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

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
