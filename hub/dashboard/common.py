"""Small helpers the dashboard's modules share: running work on the hub's main loop
without blocking the HTTP server's event loop, JSON answers and errors, request details,
and the security headers (added to every response by
``hub.dashboard.middleware.SecurityHeaders``, not here)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from wire.handoff import submit

if TYPE_CHECKING:
    from ..core import Hub

T = TypeVar("T")

#: Headers on every response of the hub's HTTP listener: no framing, no sniffing, scripts
#: and styles only from the hub itself (the pages use no inline script or style), nothing
#: kept in caches (answers carry names, states and CSRF tokens).
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


async def on_loop(service: Hub, fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``fn`` on the hub's main loop (which alone uses the store) and await its
    result without blocking this event loop."""
    return await asyncio.wait_for(asyncio.wrap_future(submit(service.post, fn)), timeout)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A refusal: ``{"error": message}`` (``hub.dashboard.model.Error``)."""
    return json({"error": message}, status, headers)


def json(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``doc`` (page data, or plain JSON values) as a JSON answer."""
    return Response(msgspec.json.encode(doc), status_code=status, headers=headers, media_type="application/json")


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")
