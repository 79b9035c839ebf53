"""Small helpers the dashboard's modules share: running work on the hub's main loop
without blocking the HTTP server's event loop, JSON errors, request details."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from wire.handoff import submit

if TYPE_CHECKING:
    from ..core import Hub

T = TypeVar("T")

#: Headers on every dashboard response: no framing, no sniffing, scripts and styles
#: only from the hub itself (the pages use no inline script or style).
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


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def json(doc: object, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status, headers=SECURITY_HEADERS)


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")
