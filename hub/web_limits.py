"""Request body limits for the hub's HTTP side, enforced while the body streams in.

One ASGI middleware in front of every route: a request whose ``Content-Length`` is over its
path's limit is answered 413 before a byte of the body is read; otherwise every chunk the
server hands on is counted (chunked bodies carry no length), and the first chunk that goes
over the limit ends the request with 413, before the handler has buffered or parsed more
than the limit. The 413 closes the connection (the rest of the body is never read).

Limits per path (:func:`body_limit`): the platform's webhook 64 KiB (PROTOCOL.md §5 via
``MAX_BODY_BYTES``), the login, logout and action forms 8 KiB, the JSON API 16 KiB, anything
else 8 KiB (no other route takes a body).
"""

from __future__ import annotations

import json
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .booking.webhook import MAX_BODY_BYTES as WEBHOOK_BYTES

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/webhooks/booking"
FORM_BYTES = 8 * 1024
API_BYTES = 16 * 1024
DEFAULT_BYTES = 8 * 1024


def body_limit(path: str) -> int:
    """The largest request body accepted at ``path``, in bytes."""
    if path == WEBHOOK_PATH:
        return WEBHOOK_BYTES
    if path.startswith("/api/"):
        return API_BYTES
    return FORM_BYTES if path in ("/login", "/logout") or path.startswith("/sites/") else DEFAULT_BYTES


class _TooLarge(Exception):
    """Raised from ``receive`` when the body goes over the limit; caught by BodyLimit."""


class BodyLimit:
    """The ASGI middleware; install it inside Starlette's error middleware
    (``Starlette(middleware=[Middleware(BodyLimit)])``) so that its 413 is what the
    client sees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = body_limit(path)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await _answer(send, 400, "Content-Length is not a whole number")
                return
            if size > limit:
                log.warning("%s: refused a body of %d bytes (limit %d)", path, size, limit)
                await _answer(send, 413, f"request body over {limit} bytes")
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            log.warning("%s: refused a streamed body over %d bytes", path, limit)
            if not started:
                await _answer(send, 413, f"request body over {limit} bytes")


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})  # the security headers come from hub.dashboard.middleware
    await send({"type": "http.response.body", "body": body})
