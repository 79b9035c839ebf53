"""Every response of the hub's HTTP listener carries the same security headers, once: every
route with every method it serves, logged in and not, 404 and 405, the body limit's 413, the
login limit's 429, redirects, the platform's webhook (refused and applied), static files and
the live stream."""

from __future__ import annotations

import datetime as dt
import re

import requests
from starlette.routing import Mount, Route

from hub.dashboard.auth import Auth
from hub.dashboard.common import SECURITY_HEADERS
from hub.web import PUBLIC_ROUTES
from testkit.booking_fake import iso, signed_webhook
from testkit.dashboard import SseReader, login_form

from ._dashboard import Env, auth_fixture, env_fixture  # noqa: F401 (the auth and env fixtures)

EXPECTED = {k.lower(): v for k, v in SECURITY_HEADERS.items()}


def assert_headers(r: requests.Response, seen: dict[int, int]) -> None:
    """The security headers, each exactly once (requests joins repeated headers with ", ")."""
    for name, value in EXPECTED.items():
        assert r.headers.get(name) == value, (r.request.method, r.url, r.status_code, name, r.headers.get(name))
    seen[r.status_code] = seen.get(r.status_code, 0) + 1


def _concrete(path: str) -> str:
    return re.sub(r"\{site\}", "minheim", re.sub(r"\{id\}", "no-such-enrollment", path))


def test_every_route_and_every_refusal_carries_the_security_headers(env: Env, auth: Auth) -> None:
    seen: dict[int, int] = {}
    admin = env.login("boss")
    anonymous = requests.Session()
    routes = env.hub.service.web.app.routes
    assert {getattr(r, "path", "") for r in routes} >= PUBLIC_ROUTES
    swept = 0
    for route in routes:
        if isinstance(route, Mount):
            for path in (route.path + "/dashboard.css", route.path + "/dashboard.js", route.path + "/nothing-here"):
                for s in (anonymous, admin):
                    assert_headers(s.get(env.url + path, timeout=10), seen)
            swept += 1
            continue
        assert isinstance(route, Route)
        path = _concrete(route.path)
        if path == "/api/v1/live":  # a stream: its refusals here, its 200 below
            path += "?view=none"
        for method in sorted(route.methods or ()):
            for s in (anonymous, admin):
                if method == "POST" and path == "/logout" and s is admin:
                    continue  # below, last
                if method == "POST" and path.startswith("/api/"):
                    r = s.post(env.url + path, json={"action": "no-such-action", "member": "", "reader": ""},
                               allow_redirects=False, timeout=10)
                elif method == "POST":
                    r = s.post(env.url + path, data={"csrf": str(admin.headers["X-CSRF-Token"]), "action": ""},
                               allow_redirects=False, timeout=10)
                else:
                    r = s.request(method, env.url + path, allow_redirects=False, timeout=10)
                assert_headers(r, seen)
        swept += 1
    assert swept == len(routes)
    # Unknown paths, unknown methods, bad requests.
    for s in (anonymous, admin):
        assert_headers(s.get(env.url + "/no/such/page", timeout=10), seen)
        assert_headers(s.get(env.url + "/api/v1/no-such-thing", timeout=10), seen)
        assert_headers(s.delete(env.url + "/api/v1/me", timeout=10), seen)
        assert_headers(s.get(env.url + "/logout", timeout=10), seen)
    r = admin.post(env.url + "/api/v1/sites/minheim/commands", data=b"x" * (17 * 1024),
                   headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413
    assert_headers(r, seen)
    r = admin.get(env.url + "/api/v1/events?limit=0", timeout=10)
    assert r.status_code == 400
    assert_headers(r, seen)
    # The platform's webhook: refused without a signature, applied when signed.
    r = requests.post(env.url + "/api/v1/webhooks/booking", data=b"{}", timeout=10)
    assert r.status_code == 401
    assert_headers(r, seen)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    body, headers = signed_webhook({"id": "bk-headers", "resource_id": env.county.resource("minheim"),
                                    "member_id": "m-1", "start": iso(start), "end": iso(start + dt.timedelta(hours=1)),
                                    "status": "confirmed", "updated_at": iso(dt.datetime.now(dt.UTC))},
                                   env.county.webhook_secret)
    r = requests.post(env.url + "/api/v1/webhooks/booking", data=body, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert_headers(r, seen)
    # The login limit's 429.
    s, token = login_form(env.url)
    for _ in range(Auth.USER_LIMIT):
        s.post(env.url + "/login", data={"name": "nobody-at-all", "password": "wrong", "csrf": token}, timeout=10)
    r = s.post(env.url + "/login", data={"name": "nobody-at-all", "password": "wrong", "csrf": token}, timeout=10)
    assert r.status_code == 429
    assert_headers(r, seen)
    # The live stream.
    sse = SseReader(admin, env.url + "/api/v1/live?site=minheim")
    try:
        assert sse.status == 200
        for name, value in EXPECTED.items():
            assert sse.response.getheader(name) == value, name
        sse.wait(lambda e: e.event == "site", 10)
    finally:
        sse.close()
    # The logout, last: a redirect.
    r = admin.post(env.url + "/logout", data={"csrf": str(admin.headers["X-CSRF-Token"])}, allow_redirects=False,
                   timeout=10)
    assert r.status_code == 303
    assert_headers(r, seen)
    print("statuses seen:", dict(sorted(seen.items())))
    assert {200, 202, 303, 400, 401, 403, 404, 405, 413, 429} <= set(seen)
