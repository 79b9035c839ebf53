"""The hub's HTTP side (Starlette, served by uvicorn on a thread of the hub process).

- ``GET /healthz``: no login; whether the hub runs and is connected to the broker.
- ``POST /api/v1/webhooks/booking``: a booking pushed by the platform (PROTOCOL.md §5),
  HMAC-verified over its timestamp and the raw body before anything is parsed; a timestamp
  more than 300 s off or a signature accepted before (remembered in the store, across
  restarts) is refused with 401; the rest is applied at once, so that the booking reaches
  the site's cache within seconds.
- ``POST /fleet/v1/join`` and ``/fleet/v1/renew``: sites joining with a code and renewing
  their certificate (``hub.fleetweb``; the code or the certificate is the credential).
- The caretakers' dashboard and its JSON API (``hub.dashboard``): pages, ``/api/v1/...``
  with a login session or ``Authorization: Bearer TOKEN`` (``[http] admin_token_file``),
  e.g. ``GET /api/v1/sites``, ``POST /api/v1/sites/{site}/push``,
  ``POST /api/v1/sites/{site}/commands`` (``{"action": "unlock", "door": ..., "seconds": ...}``).

Every request body has a limit, enforced while it streams in (``hub.web_limits``): 413
beyond it, before anything is buffered or parsed. Every response carries the same security
headers, and every route but :data:`PUBLIC_ROUTES` needs a login, checked before the
handler runs (``hub.dashboard.middleware``).

Handlers run on the server's thread and hand every act to the hub's main loop (``Hub.post``;
the dashboard awaits it without blocking the server's event loop), which alone uses the
store connection. What they serve holds the application core (``hub.core.Hub``), not the
service around it.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .booking.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookUnauthorized, verify_and_parse
from .config import read_secret
from .dashboard.app import routes as dashboard_routes
from .dashboard.common import error, json, on_loop
from .dashboard.middleware import LoginGuard, SecurityHeaders
from .errors import WebhookError
from .fleetweb import JOIN_PATH, RENEW_PATH, fleet_routes
from .outage import log_failure, store_outage
from .web_limits import WEBHOOK_PATH, BodyLimit

if TYPE_CHECKING:
    from .core import Hub

log = logging.getLogger(__name__)

#: Backoff between attempts to bind the HTTP port: from the first delay, doubling, to the cap.
BIND_RETRY_FIRST = 0.5
BIND_RETRY_MAX = 10.0


#: The routes (by path) that anyone may call without a login: the health check, the
#: platform's webhook (it has its own signature), the login page and the static files.
#: Every other route answers 401 (``/api/…``) or redirects to the login page.
PUBLIC_ROUTES = frozenset({"/healthz", WEBHOOK_PATH, "/login", "/static", JOIN_PATH, RENEW_PATH, "/sw.js"})


class HubApp(Starlette):
    """Starlette with :class:`SecurityHeaders` outside everything, its error handler
    included, so that even a 500 carries the headers."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(service: Hub) -> Starlette:
    cfg = service.cfg
    secret = read_secret(cfg.booking.webhook_secret_file).encode() if cfg.booking.webhook_secret_file else None
    token = read_secret(cfg.http.admin_token_file) if cfg.http.admin_token_file else None

    async def health(request: Request) -> Response:
        return json({"status": "ok", "mqtt": service.connected, "sites": len(cfg.sites)})

    async def webhook(request: Request) -> Response:
        if secret is None:
            return error(404, "webhooks are off: set [booking] webhook_secret_file")
        raw = await request.body()  # at most 64 KiB: BodyLimit answers 413 beyond
        try:
            push = verify_and_parse(raw, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                                    secret, now=time.time())
        except WebhookError as exc:
            log.warning("webhook refused: %s", exc)
            return error(401 if isinstance(exc, WebhookUnauthorized) else 400, str(exc))
        # Awaited, not blocking: the live dashboard streams share this event loop.
        try:
            versions = await on_loop(service, lambda: service.apply_push(push), timeout=30)
        except Exception as exc:
            if not store_outage(exc):
                raise
            # The push is not applied (its signature is remembered only in the same transaction
            # as its booking); the platform's retry applies it.
            log_failure(log, exc, "webhook for booking %s not applied; answered 503", push.booking.id)
            return error(503, "the hub's store is unavailable for a moment; send it again",
                         {"Retry-After": "5"})
        if versions is None:
            log.warning("webhook refused: signature accepted before (replay of booking %s)", push.booking.id)
            return error(401, "this signature was accepted before (a replay)")
        return json({"applied": push.booking.id, "cache_versions": versions})

    auth, dashboard = dashboard_routes(service, token)
    routes = [
        Route("/healthz", health),
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        *fleet_routes(service),
        *dashboard,
    ]
    app = HubApp(routes=routes, middleware=[
        Middleware(BodyLimit),
        Middleware(LoginGuard, auth=auth, routes=routes, public=PUBLIC_ROUTES),
    ])
    app.state.auth = auth
    return app


class WebServer:
    """uvicorn on a thread, serving a socket it binds itself; ``stop()`` shuts it down.

    A port it cannot bind (in use, e.g. taken by another program or by the local end of an
    outgoing connection while the hub was down; an address not there yet at boot) does not
    end the hub: one line per failed attempt (``HTTP port 127.0.0.1:8080 is in use;
    retrying in 0.5 s``), attempts again with backoff doubling from ``retry_first`` to
    ``retry_max`` seconds, and serves as soon as the bind succeeds. The rest of the hub
    (MQTT ingest, booking sync) runs meanwhile."""

    def __init__(self, app: Starlette, host: str, port: int, *, retry_first: float = BIND_RETRY_FIRST,
                 retry_max: float = BIND_RETRY_MAX) -> None:
        self.app = app
        self.host, self.port = host, port
        self.retry_first, self.retry_max = retry_first, retry_max
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                     access_log=False)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)
        #: Failed bind attempts so far.
        self.bind_failures = 0
        self._stop = threading.Event()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        return socket.create_server((self.host, self.port), family=family, backlog=self.config.backlog)

    def _run(self) -> None:
        delay = self.retry_first
        while True:
            try:
                sock = self._bind()
                break
            except OSError as exc:
                self.bind_failures += 1
                why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror or exc})"
                log.warning("HTTP port %s:%d %s; retrying in %.1f s", self.host, self.port, why, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.retry_max)
        if self.bind_failures:
            log.warning("HTTP port %s:%d bound after %d failed attempts; serving", self.host, self.port,
                        self.bind_failures)
        try:
            self.server.run(sockets=[sock])
        finally:
            sock.close()

    def start(self, timeout: float = 10.0) -> WebServer:
        """Start serving; return once it serves, or once a first bind attempt failed (the
        thread keeps trying). RuntimeError if the server ends or hangs on its own."""
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started and not self.bind_failures:
            if not self.thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.should_exit = True
        self.thread.join(5)


def start_web(service: Hub) -> WebServer:
    return WebServer(create_app(service), service.cfg.http.host, service.cfg.http.port).start()
