"""The dashboard's HTML pages: login and logout, the county overview, a site's page, and
the confirm step of an action for browsers without JavaScript.

Pages need a session (else a redirect to ``/login``) and every POST the session's CSRF
token: both checked before a handler runs (``hub.dashboard.middleware.LoginGuard``). A
site the user may not see answers 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..core.pages import NoshowRoom, SiteSnapshot
from . import actions
from .auth import LOGIN_COOKIE, Auth, Principal
from .common import on_loop
from .middleware import principal
from .model import ActionForm, BadRequest, LoginForm, parse
from .render import lang_of, page

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)


def _safe_next(target: str | None) -> str:
    """Only paths of this hub (no ``//host`` or scheme): no open redirect after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class Views:
    def __init__(self, hub: Hub, auth: Auth) -> None:
        self.hub = hub
        self.auth = auth
        self.cfg = hub.cfg

    # --- helpers -------------------------------------------------------------------------------

    def _names(self, p: Principal, site: str) -> bool:
        return p.admin or self.cfg.site(site).show_names

    def _visible(self, p: Principal) -> list[str]:
        return [s.id for s in self.cfg.sites if p.may_see(s.id)]

    def _error_page(self, request: Request, p: Principal | None, status: int) -> Response:
        key = {404: "not_found", 400: "bad_request"}.get(status, "forbidden")
        return page(request, "error.html", {"message_key": key, "status": status}, user=p, status=status)

    # --- login / logout ------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request, None, 200)

    def _login_page(self, request: Request, message: str | None, status: int,
                    headers: dict[str, str] | None = None) -> Response:
        token = self.auth.login_token(request)
        resp = page(request, "login.html", {
            "message": message, "login_csrf": token, "next": _safe_next(request.query_params.get("next")),
        }, user=None, status=status, headers=headers)
        self.auth.set_login_cookie(request, resp, token)
        return resp

    async def login(self, request: Request) -> Response:
        try:
            form = parse(dict(await request.form()), LoginForm, what="the form")
        except BadRequest:
            form = LoginForm()  # a file instead of a field: no token, refused below
        name, password = form.name.strip(), form.password
        token, cookie = form.csrf, request.cookies.get(LOGIN_COOKIE) or ""
        if not cookie or not hmac.compare_digest(token.encode(), cookie.encode()):
            return self._login_page(request, "login_stale", 403)
        result = await self.auth.login(request, name, password)
        if isinstance(result, float):
            secs = math.ceil(result)
            return self._login_page(request, f"login_limited:{secs}", 429, {"Retry-After": str(secs)})
        if result is None:
            return self._login_page(request, "login_failed", 401)
        sid, _csrf = result
        resp = _redirect(_safe_next(form.next or "/"))
        self.auth.set_session_cookie(request, resp, sid)
        return resp

    async def logout(self, request: Request) -> Response:
        p = principal(request)
        await self.auth.logout(p)
        resp = _redirect("/login")
        self.auth.clear_session_cookie(resp)
        return resp

    # --- pages -------------------------------------------------------------------------------------

    async def county(self, request: Request) -> Response:
        p = principal(request)
        visible = self._visible(p)
        names = {s: self._names(p, s) for s in visible}

        def read() -> list[SiteSnapshot]:
            now = time.time()
            return [self.hub.snapshot(s, names=names[s], now=now, events=0) for s in visible]

        sites = await on_loop(self.hub, read)
        return page(request, "county.html", {
            "sites": sites, "live_url": "/api/v1/live?view=card", "title_key": "overview",
        }, user=p)

    async def site(self, request: Request) -> Response:
        p = principal(request)
        site = request.path_params["site"]
        if site not in self._visible(p):
            return self._error_page(request, p, 404)
        names = self._names(p, site)

        def read() -> tuple[SiteSnapshot, list[NoshowRoom]]:
            now = time.time()
            return self.hub.snapshot(site, names=names, now=now), self.hub.noshows(site, now)

        snap, chart = await on_loop(self.hub, read)
        q = request.query_params
        flash = ("sent", None) if q.get("sent") else ("failed", q.get("failed")) if q.get("failed") else None
        return page(request, "site.html", {
            "s": snap, "chart": chart, "flash": flash,
            "allowed": sorted(a for a in actions.ACTIONS if p.may(a, site)),
            "live_url": "/api/v1/live?" + urlencode({"view": "detail", "site": site}),
        }, user=p)

    async def action(self, request: Request) -> Response:
        """The form fallback: first POST shows the confirm step, the second (``confirmed``) acts."""
        p = principal(request)
        site = request.path_params["site"]
        try:
            form = parse(dict(await request.form()), ActionForm, what="the form")
        except BadRequest:
            return self._error_page(request, p, 400)
        params = form.params()
        action = form.action
        refused = actions.check(self.hub, p, site, action, params)
        if refused is None:  # no confirm step for an unlock that would be refused
            refused = await actions.refused_in_lockdown(self.hub, site, action)
        if refused is not None:
            await actions.record_refusal(self.hub, p, action, refused, site=site, params=params)
            if refused.status in (403, 404):
                return self._error_page(request, p, refused.status)
            return _redirect(f"/sites/{site}?" + urlencode({"failed": refused.doc["error"]}))
        if form.confirmed != "1":
            conf = self.cfg.site(site)
            room = params["room"] or None
            room_name = next((r.name or r.id for r in conf.rooms if r.id == room), None)
            return page(request, "confirm.html", {
                "site": {"id": site, "name": conf.name or site}, "action": action, "params": params,
                "room_name": room_name, "lang_choice": lang_of(request),
            }, user=p)
        out = await actions.perform(self.hub, p, site, action, params)
        if out.ok:
            return _redirect(f"/sites/{site}?" + urlencode({"sent": action}))
        return _redirect(f"/sites/{site}?" + urlencode({"failed": out.doc.get("error", "?")}))
