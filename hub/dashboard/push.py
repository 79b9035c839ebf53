"""Web Push in the dashboard: the service worker (``/sw.js``, scope ``/``: it shows the
alerts pushed to this browser and opens the page they link to), and the caller's browsers
(``GET/POST/DELETE /api/v1/me/push``: the hub's VAPID key, subscribe, unsubscribe). The
button "Benachrichtigungen aktivieren" on ``/settings/alerts`` (static/push.js) asks the
browser for permission, subscribes with the hub's key and POSTs the subscription.

Only logged-in users (not the admin token) have browsers; each sees and removes only its
own. A subscription that cannot work (not an http(s) endpoint, not a P-256 key, not a
16-byte secret) or at a push service not in ``[alerts] push_services`` is refused with 400;
one more than ``MAX_PER_USER``, another user's browser, or any while the hub has no VAPID
key with 409.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ..alerts.webpush import Subscription, WebPushError
from ..core.pushing_alerts import PushRefused
from .alertmodel import PushBrowser, PushState, PushSubscribeBody, PushUnsubscribeBody
from .auth import Principal
from .common import error, json, on_loop
from .model import parse_json
from .render import STATIC

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)

SERVICE_WORKER = "/sw.js"


async def service_worker(request: Request) -> Response:
    """The service worker, at the root so that its scope is the whole dashboard."""
    return FileResponse(STATIC / "sw.js", media_type="text/javascript",
                        headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"})


class PushApi:
    """``/api/v1/me/push`` (see the module's docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _state(self, user: str) -> PushState:
        try:
            key = self.hub.push_key()
        except WebPushError as exc:
            log.error("Web Push: %s", exc)
            key = None
        return PushState(public_key=key, browsers=[
            PushBrowser(host=urlsplit(b.endpoint).netloc, since=b.created_at, last_ok=b.last_ok,
                        last_error=b.last_error) for b in self.hub.push_browsers(user)])

    async def me_push(self, request: Request, p: Principal) -> Response:
        """GET: the hub's key and the caller's browsers; POST: subscribe this browser;
        DELETE: forget one (one route, so that a 405 names the methods)."""
        if p.session_key is None:
            return error(403, "the admin token has no browsers; log in as a user")
        if request.method == "POST":
            body = parse_json(await request.body(), PushSubscribeBody)
            sub = Subscription(body.endpoint, body.keys.p256dh, body.keys.auth)
            try:
                await on_loop(self.hub, lambda: self.hub.subscribe_push(p.name, sub))
            except PushRefused as exc:
                return error(409 if exc.conflict else 400, str(exc))
            return json(await on_loop(self.hub, lambda: self._state(p.name)), 201)
        if request.method == "DELETE":
            gone = parse_json(await request.body(), PushUnsubscribeBody)
            if not await on_loop(self.hub, lambda: self.hub.unsubscribe_push(p.name, gone.endpoint)):
                return error(404, "no such browser of yours")
            return json(await on_loop(self.hub, lambda: self._state(p.name)))
        return json(await on_loop(self.hub, lambda: self._state(p.name)))
