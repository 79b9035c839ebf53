"""The ASGI middleware of the hub's HTTP listener: the security headers on every response,
and the login guard in front of every route that is not public.

``SecurityHeaders`` sits outside everything else (``hub.web.HubApp``), so that errors,
404/405, the body limit's 413, the webhook's answers, static files and the live stream
carry the same headers (``hub.dashboard.common.SECURITY_HEADERS``), replacing any a
handler set.

``LoginGuard`` finds the route a request is for; a route whose path is not in the public
list (``hub.web.PUBLIC_ROUTES``) needs a login, a request that matches no route (404) or
not with its method (405) is left to the router. It answers, before any handler runs:

- no valid session cookie and no admin token: ``/api/…`` 401 (JSON, ``WWW-Authenticate``),
  pages a 303 to ``/login`` (``?next=`` the page for a GET), the session cookie cleared;
- a state-changing request (not GET/HEAD/OPTIONS) made with a session but without the
  session's CSRF token, in the ``X-CSRF-Token`` header or a form's ``csrf`` field:
  403 (JSON for ``/api/…``, the error page otherwise), before its body is acted on.

Handlers find the caller with :func:`principal`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import CSRF_FIELD, CSRF_HEADER, Auth, Principal
from .common import SECURITY_HEADERS, error
from .render import page

log = logging.getLogger(__name__)

_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
_HEADER_NAMES = frozenset(k for k, _ in _HEADERS)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class SecurityHeaders:
    """Sets :data:`SECURITY_HEADERS` on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _HEADER_NAMES]
                message = {**message, "headers": headers + _HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def principal(request: Request) -> Principal:
    """The caller of a request that passed the login guard."""
    p: Principal = request.scope["state"]["principal"]
    return p


class LoginGuard:
    """Authentication and CSRF for every route but the public ones (see the module's doc)."""

    def __init__(self, app: ASGIApp, *, auth: Auth, routes: Sequence[BaseRoute], public: frozenset[str]) -> None:
        self.app = app
        self.auth = auth
        self.routes = routes
        self.public = public

    def _protected(self, scope: Scope) -> bool:
        # The router takes the first FULL match, a later route of the same path included, so
        # a PARTIAL one (the path with another method) must not end the search: a GET page
        # and a POST action on one path would leave the POST unguarded. Only when no route
        # matches fully does the router answer (405 for a path known with other methods,
        # else 404) without running any handler.
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", "") not in self.public
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protected(scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        p = await self.auth.principal(request)
        if p is None:
            await self._unauthenticated(request)(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and not p.csrf_ok(request.headers.get(CSRF_HEADER)):
            field = None
            if request.headers.get("content-type", "").split(";")[0].strip().lower() in _FORMS:
                body = await request.body()  # within the body limit (hub.web_limits runs outside)
                field = (await request.form()).get(CSRF_FIELD)
                receive = _replay(body, receive)
            if not isinstance(field, str) or not p.csrf_ok(field):
                log.warning("%s %s by %s refused: missing or wrong CSRF token", scope["method"], scope["path"], p.name)
                await self._forbidden(request, p)(scope, receive, send)
                return
        scope.setdefault("state", {})["principal"] = p
        await self.app(scope, receive, send)

    def _unauthenticated(self, request: Request) -> Response:
        if request.url.path.startswith("/api/"):
            return error(401, "log in (session cookie) or send the admin token (Authorization: Bearer)",
                         {"WWW-Authenticate": 'Bearer realm="torwart"'})
        target = "/login"
        if request.method in ("GET", "HEAD"):
            target += "?next=" + quote(request.url.path, safe="/")
        response = RedirectResponse(target, status_code=303)
        self.auth.clear_session_cookie(response)
        return response

    @staticmethod
    def _forbidden(request: Request, p: Principal) -> Response:
        if request.url.path.startswith("/api/"):
            return error(403, "missing or wrong CSRF token (X-CSRF-Token header; see GET /api/v1/me)")
        return page(request, "error.html", {"message_key": "forbidden", "status": 403}, user=p, status=403)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands ``body`` on once more (the guard read it), then waits for
    the client as the server's would."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
