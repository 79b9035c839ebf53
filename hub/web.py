"""The hub's HTTP side (Starlette, served by uvicorn on a thread of the hub process).

- ``GET /healthz``: no login; whether the hub runs and is connected to the broker.
- ``POST /api/v1/webhooks/booking``: a booking pushed by the platform (PROTOCOL.md §5),
  HMAC-verified over the raw body before anything is parsed; applied at once, so that
  the booking reaches the site's cache within seconds.
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

from .booking.webhook import SIGNATURE_HEADER, verify_and_parse
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
            booking = verify_and_parse(raw, request.headers.get(SIGNATURE_HEADER), secret)
        except WebhookError as exc:
            log.warning("webhook refused: %s", exc)
            return _error(401 if "signature" in str(exc).lower() else 400, str(exc))
        # Awaited, not blocking: the live dashboard streams share this event loop.
        versions = await on_loop(service, lambda: service.apply_webhook(booking), timeout=30)
        return JSONResponse({"applied": booking.id, "cache_versions": versions})

    auth, dashboard = dashboard_routes(service, token)
    app = Starlette(routes=[
        Route("/healthz", health),
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        *dashboard,
    ], middleware=[Middleware(BodyLimit)])
    app.state.auth = auth
    return app


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
