"""The dashboard's routes, for ``hub.web`` to serve.

Pages: ``/`` (county), ``/sites/{site}``, ``/login``, ``/logout``, ``/sites/{site}/actions``
(the no-JavaScript confirm step); ``/static/…`` (CSS, JS); the JSON API and its live stream
under ``/api/v1`` (``hub.dashboard.api``; the document is ``/api/v1/openapi.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .api import Api
from .auth import Auth
from .render import STATIC
from .views import Views

if TYPE_CHECKING:
    from ..core import Hub


def routes(service: Hub, token: str | None) -> tuple[Auth, list[BaseRoute]]:
    """The dashboard's auth (sessions, token) and routes."""
    auth = Auth(service, token=token, session_seconds=service.cfg.http.session_hours * 3600)
    v, a = Views(service, auth), Api(service, auth)
    g = a.guard
    return auth, [
        Route("/", v.county, methods=["GET"]),
        Route("/login", v.login_form, methods=["GET"]),
        Route("/login", v.login, methods=["POST"]),
        Route("/logout", v.logout, methods=["POST"]),
        Route("/sites/{site}", v.site, methods=["GET"]),
        Route("/sites/{site}/actions", v.action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/v1/openapi.json", g(a.openapi), methods=["GET"]),
        Route("/api/v1/me", g(a.me), methods=["GET"]),
        Route("/api/v1/sites", g(a.sites), methods=["GET"]),
        Route("/api/v1/sites/{site}", g(a.site), methods=["GET"]),
        Route("/api/v1/sites/{site}/rooms", g(a.rooms), methods=["GET"]),
        Route("/api/v1/sites/{site}/doors", g(a.doors), methods=["GET"]),
        Route("/api/v1/sites/{site}/noshows", g(a.noshows), methods=["GET"]),
        Route("/api/v1/events", g(a.events), methods=["GET"]),
        Route("/api/v1/live", g(a.live), methods=["GET"]),
        Route("/api/v1/sites/{site}/push", g(a.push, post=True), methods=["POST"]),
        Route("/api/v1/sites/{site}/commands", g(a.command, post=True), methods=["POST"]),
        Route("/api/v1/sites/{site}/enroll", g(a.enroll, post=True), methods=["POST"]),
        Route("/api/v1/enrollments/{id}", g(a.enrollment), methods=["GET"]),
    ]
