"""A real HTTP receiver of the hub's signed webhooks for tests (a threading HTTP server on a
free loopback port): it checks each request's signature and timestamp with the hub's own
``hub.webhook_signing.verify`` and the secret it was given, answers 204 and keeps the
request when they hold, 401 otherwise (kept apart, with the reason). ``stop()`` and
``start()`` again take it down and back on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hub.webhook_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookUnauthorized, verify

from .util import free_port


@dataclass(frozen=True)
class Delivery:
    """One request the receiver took: its path, headers and JSON body."""

    path: str
    headers: dict[str, str]
    doc: dict[str, Any]


class WebhookSink:
    """``received``: the verified deliveries; ``refused``: why the others were refused."""

    def __init__(self, secret: bytes, port: int | None = None) -> None:
        self.secret = secret
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.lock = threading.Lock()
        self.received: list[Delivery] = []
        self.refused: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    verify(raw, self.headers.get(SIGNATURE_HEADER), self.headers.get(TIMESTAMP_HEADER), sink.secret,
                           now=time.time(), receiver="the receiver")
                except WebhookUnauthorized as exc:
                    with sink.lock:
                        sink.refused.append(str(exc))
                    self.send_response(401)
                    self.end_headers()
                    return
                with sink.lock:
                    sink.received.append(Delivery(self.path, dict(self.headers.items()), json.loads(raw)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> WebhookSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
