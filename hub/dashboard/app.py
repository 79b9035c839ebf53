"""The dashboard's routes, for ``hub.web`` to serve.

Pages: ``/`` (county), ``/sites/{site}``, ``/login``, ``/logout``, ``/sites/{site}/actions``
(the no-JavaScript confirm step), ``/alerts``, ``/alerts/{alert}/ack`` and
``/settings/alerts`` (``hub.dashboard.alerts``); ``/audit`` and the CSV downloads
``/export/events.csv``, ``/export/audit.csv`` (``hub.dashboard.exports``); ``/members``,
``/members/{member}/export.json``, ``/members/{member}/erase`` (``hub.dashboard.member_pages``); ``/static/…``
(CSS, JS); the JSON API and its live stream
under ``/api/v1`` (``hub.dashboard.api``; the document, generated from this table and the
types of ``hub.dashboard.model``, is ``/api/v1/openapi.json``).

Which routes need a login is not decided here: ``hub.web.PUBLIC_ROUTES`` lists the public
ones, and ``hub.dashboard.middleware.LoginGuard`` guards the rest (and checks CSRF).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .alerts import Alerts
from .api import Api, Handler
from .auth import Auth
from .common import error
from .exports import Exports
from .member_pages import MemberPages
from .middleware import principal
from .model import BadRequest
from .push import SERVICE_WORKER, PushApi, service_worker
from .render import STATIC
from .views import Views

if TYPE_CHECKING:
    from ..core import Hub


def _as_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An API handler (request, caller) as a Starlette endpoint: the guard found the
    caller; a body or query string that does not fit its type is answered 400."""
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, principal(request))
        except BadRequest as exc:
            return error(400, str(exc))

    endpoint.__doc__ = handler.__doc__
    endpoint.__name__ = handler.__name__
    return endpoint


def routes(service: Hub, token: str | None) -> tuple[Auth, list[BaseRoute]]:
    """The dashboard's auth (sessions, token) and routes."""
    auth = Auth(service, token=token, session_seconds=service.cfg.http.session_hours * 3600)
    v, a = Views(service, auth), Api(service, auth)
    al, x = Alerts(service, auth), Exports(service)
    mp = MemberPages(service)
    g = _as_endpoint
    table: list[BaseRoute] = [
        Route("/", v.county, methods=["GET"]),
        Route("/login", v.login_form, methods=["GET"]),
        Route("/login", v.login, methods=["POST"]),
        Route("/logout", v.logout, methods=["POST"]),
        Route("/sites/{site}", v.site, methods=["GET"]),
        Route("/sites/{site}/actions", v.action, methods=["POST"]),
        Route("/alerts", al.page, methods=["GET"]),
        Route("/alerts/{alert}/ack", al.ack, methods=["POST"]),
        Route("/settings/alerts", al.settings_page, methods=["GET"]),
        Route("/settings/alerts", al.save_settings, methods=["POST"]),
        Route("/audit", x.audit, methods=["GET"]),
        Route("/export/events.csv", x.events_csv, methods=["GET"]),
        Route("/export/audit.csv", x.audit_csv, methods=["GET"]),
        Route("/members", mp.list, methods=["GET"]),
        Route("/members/{member}/export.json", mp.export, methods=["GET"]),
        Route("/members/{member}/erase", mp.erase, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route(SERVICE_WORKER, service_worker, methods=["GET"]),
        Route("/api/v1/openapi.json", g(a.openapi), methods=["GET"]),
        Route("/api/v1/me", g(a.me), methods=["GET"]),
        Route("/api/v1/sites", g(a.sites), methods=["GET"]),
        Route("/api/v1/sites/{site}", g(a.site), methods=["GET"]),
        Route("/api/v1/sites/{site}/rooms", g(a.rooms), methods=["GET"]),
        Route("/api/v1/sites/{site}/doors", g(a.doors), methods=["GET"]),
        Route("/api/v1/sites/{site}/noshows", g(a.noshows), methods=["GET"]),
        Route("/api/v1/events", g(a.events), methods=["GET"]),
        Route("/api/v1/live", g(a.live), methods=["GET"]),
        Route("/api/v1/sites/{site}/push", g(a.push), methods=["POST"]),
        Route("/api/v1/sites/{site}/commands", g(a.command), methods=["POST"]),
        Route("/api/v1/sites/{site}/enroll", g(a.enroll), methods=["POST"]),
        Route("/api/v1/enrollments/{id}", g(a.enrollment), methods=["GET"]),
        Route("/api/v1/members/{member}/export", g(a.member_export), methods=["GET"]),
        Route("/api/v1/members/{member}/erase", g(a.member_erase), methods=["POST"]),
        Route("/api/v1/alerts", g(al.api_list), methods=["GET"]),
        Route("/api/v1/alerts/{alert}/ack", g(al.api_ack), methods=["POST"]),
        Route("/api/v1/me/alerts", g(al.api_me_alerts), methods=["GET", "POST"]),
        Route("/api/v1/me/push", g(PushApi(service).me_push), methods=["GET", "POST", "DELETE"]),
    ]
    a.routes = table
    return auth, table
