"""The login guard against the router's own matching: a route is guarded whatever other
routes share its path (Starlette dispatches to the first route that matches path AND
method, so one path may have a GET page and a POST action)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hub.dashboard.middleware import LoginGuard


class Nobody:
    """The guard's view of a request without a session or token (what Auth answers then)."""

    async def principal(self, request: Request) -> None:
        return None

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie("torwart_session")


async def page(request: Request) -> Response:
    return PlainTextResponse("page")


async def act(request: Request) -> Response:
    return PlainTextResponse("acted")


def call(app: Any, method: str, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": [], "scheme": "http", "server": ("hub", 80), "client": ("lan", 1),
             "http_version": "1.1"}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def guarded(routes: list[Route], public: frozenset[str] = frozenset()) -> Starlette:
    return Starlette(routes=routes, middleware=[Middleware(LoginGuard, auth=Nobody(), routes=routes, public=public)])


def test_a_post_route_behind_a_get_route_of_the_same_path_is_guarded_too() -> None:
    app = guarded([Route("/sites/{site}/x", page, methods=["GET"]), Route("/sites/{site}/x", act, methods=["POST"])])
    assert call(app, "GET", "/sites/a/x")[0] == 303
    status, body = call(app, "POST", "/sites/a/x")
    assert status == 303 and body != b"acted"


def test_without_a_route_for_the_method_the_router_answers_and_no_handler_runs() -> None:
    app = guarded([Route("/sites/{site}/x", page, methods=["GET"]), Route("/login", page, methods=["GET"])],
                  public=frozenset({"/login"}))
    assert call(app, "DELETE", "/sites/a/x")[0] == 405
    assert call(app, "POST", "/login")[0] == 405
    assert call(app, "GET", "/login") == (200, b"page")
    assert call(app, "GET", "/nowhere")[0] == 404
