"""The hub's HTTP side (Starlette, served by uvicorn on a thread of the hub process).

- ``GET /healthz``: no login; whether the hub runs and is connected to the broker.
- ``POST /api/v1/webhooks/booking``: a booking pushed by the platform (PROTOCOL.md §5),
  HMAC-verified over its timestamp and the raw body before anything is parsed; a timestamp
  more than 300 s off or a signature accepted before (remembered in the store, across
  restarts) is refused with 401; the rest is applied at once, so that the booking reaches
  the site's cache within seconds.
- The caretakers' dashboard and its JSON API (``hub.dashboard``): pages, ``/api/v1/...``
  with a login session or ``Authorization: Bearer TOKEN`` (``[http] admin_token_file``),
  e.g. ``GET /api/v1/sites``, ``POST /api/v1/sites/{site}/push``,
  ``POST /api/v1/sites/{site}/commands`` (``{"action": "unlock", "door": ..., "seconds": ...}``).

Every request body has a limit, enforced while it streams in (``hub.web_limits``): 413
beyond it, before anything is buffered or parsed.

Handlers run on the server's thread and hand every store access to the hub's main loop
(``service.call``; the dashboard awaits it without blocking the server's event loop),
which alone uses the store connection.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .booking.webhook import (
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignedPush,
    WebhookUnauthorized,
    verify_and_parse,
)
from .config import read_secret
from .dashboard.app import routes as dashboard_routes
from .dashboard.common import on_loop
from .errors import WebhookError
from .web_limits import WEBHOOK_PATH, BodyLimit

if TYPE_CHECKING:
    from .service import HubService

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(service: HubService) -> Starlette:
    cfg = service.cfg
    secret = read_secret(cfg.booking.webhook_secret_file).encode() if cfg.booking.webhook_secret_file else None
    token = read_secret(cfg.http.admin_token_file) if cfg.http.admin_token_file else None

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "mqtt": service.link.connected, "sites": len(cfg.sites)})

    async def webhook(request: Request) -> Response:
        if secret is None:
            return _error(404, "webhooks are off: set [booking] webhook_secret_file")
        raw = await request.body()  # at most 64 KiB: BodyLimit answers 413 beyond
        try:
            push = verify_and_parse(raw, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                                    secret, now=time.time())
        except WebhookError as exc:
            log.warning("webhook refused: %s", exc)
            return _error(401 if isinstance(exc, WebhookUnauthorized) else 400, str(exc))
        # Awaited, not blocking: the live dashboard streams share this event loop.
        versions = await on_loop(service, lambda: _apply_once(service, push), timeout=30)
        if versions is None:
            log.warning("webhook refused: signature accepted before (replay of booking %s)", push.booking.id)
            return _error(401, "this signature was accepted before (a replay)")
        return JSONResponse({"applied": push.booking.id, "cache_versions": versions})

    auth, dashboard = dashboard_routes(service, token)
    app = Starlette(routes=[
        Route("/healthz", health),
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        *dashboard,
    ], middleware=[Middleware(BodyLimit)])
    app.state.auth = auth
    return app


def _apply_once(service: HubService, push: SignedPush) -> dict[str, int] | None:
    """On the hub's main loop: remember the push's signature and apply its booking; None
    when the signature was accepted before. A push that fails to apply is forgotten again,
    so that the platform's retry of the same request is not taken for a replay."""
    store, now = service.store, time.time()
    # A signature whose timestamp is this far back fails the timestamp check anyway.
    forget_before = int(now) - MAX_SKEW_SECONDS - 60
    if not store.remember_webhook_signature(push.signature, ts=push.timestamp, at=now, forget_before=forget_before):
        return None
    try:
        return service.apply_webhook(push.booking)
    except BaseException:
        store.forget_webhook_signature(push.signature)
        raise


class WebServer:
    """uvicorn on a thread; ``stop()`` shuts it down."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    lifespan="off", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> WebServer:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the HTTP server did not start (is the port in use?)")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


def start_web(service: HubService) -> WebServer:
    return WebServer(create_app(service), service.cfg.http.host, service.cfg.http.port).start()
