"""The hub's HTTP endpoints for sites that join and renew (no login: the join code or the
site's certificate is the credential; hub/provision/fleet.py does the work, on the main loop).

- ``POST /fleet/v1/join``: a ``wire.join.JoinRequest``; 200 with a ``JoinAnswer``, or
  ``{"error": ...}`` with 400 (malformed), 403 (unknown or wrong code, revoked site),
  410 (used, replaced, expired or locked code), 429 (too many requests from this address).
- ``POST /fleet/v1/renew``: a ``wire.join.RenewRequest``; 200 with a ``RenewAnswer``, or
  400 / 403 / 429 as above.

Each client address may make ``PER_MINUTE`` requests a minute; a code also locks itself
after ``fleet.MAX_ATTEMPTS`` wrong tries. Served over plain HTTP or behind a TLS proxy
alike: neither exchange relies on the transport (wire/join.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import join as wj

from .dashboard.common import client_ip, error, json, on_loop
from .provision import fleet

if TYPE_CHECKING:
    from .core import Hub

log = logging.getLogger(__name__)

JOIN_PATH = "/fleet/v1/join"
RENEW_PATH = "/fleet/v1/renew"
PER_MINUTE = 20
R = TypeVar("R")


class _Rate:
    """At most ``n`` requests per key in any 60 s (in memory: a restart forgets)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        with self._lock:
            if len(self._seen) > 10_000:  # forget addresses quiet for a minute (a flood of them)
                for k in [k for k, q in self._seen.items() if not q or q[-1] <= now - 60]:
                    del self._seen[k]
            q = self._seen[key]
            while q and q[0] <= now - 60:
                q.popleft()
            if len(q) >= self.n:
                return False
            q.append(now)
            return True


def fleet_routes(service: Hub) -> list[Route]:
    rate = _Rate(PER_MINUTE)

    async def handle(request: Request, kind: type[msgspec.Struct], act: str) -> Response:
        now = time.time()
        if not rate.allow(client_ip(request), now):
            log.warning("%s refused: too many requests from %s", act, client_ip(request))
            return error(429, "too many requests from this address; wait a minute", {"Retry-After": "60"})
        try:
            req = msgspec.json.decode(await request.body(), type=kind)
        except msgspec.DecodeError as exc:
            return error(400, f"malformed {act} request: {exc}")

        def work() -> msgspec.Struct | fleet.JoinRefused:
            try:
                if isinstance(req, wj.JoinRequest):
                    return service.answer_join(req, now)
                assert isinstance(req, wj.RenewRequest)
                return service.answer_renew(req, now)
            except fleet.JoinRefused as exc:
                return exc

        out = await on_loop(service, work, timeout=60)
        if isinstance(out, fleet.JoinRefused):
            log.warning("%s refused (%d) for %s: %s", act, out.status, client_ip(request), out)
            return error(out.status, str(out))
        return json(out)

    async def join(request: Request) -> Response:
        return await handle(request, wj.JoinRequest, "join")

    async def renew(request: Request) -> Response:
        return await handle(request, wj.RenewRequest, "renewal")

    return [Route(JOIN_PATH, join, methods=["POST"]), Route(RENEW_PATH, renew, methods=["POST"])]
