"""Dashboard logins over real HTTP against a running hub: nothing without a login but
health and the webhook, passwords, the login form's token, rate limits, session expiry,
logout, CSRF refusals, and the bearer admin token of the API."""

from __future__ import annotations

import time

import requests

from hub.dashboard.auth import Auth
from testkit.dashboard import SseReader, login_form

from ._dashboard import Env, auth_fixture, env_fixture  # noqa: F401 (the auth and env fixtures)


def test_nothing_but_health_the_login_page_and_static_files_without_a_login(env: Env) -> None:
    url = env.url
    assert requests.get(url + "/healthz", timeout=10).json()["status"] == "ok"
    assert requests.get(url + "/login", timeout=10).status_code == 200
    assert requests.get(url + "/static/dashboard.css", timeout=10).status_code == 200
    for path in ("/", "/sites/minheim"):
        r = requests.get(url + path, allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    for path in ("/api/v1/sites", "/api/v1/sites/minheim", "/api/v1/events", "/api/v1/me", "/api/v1/openapi.json",
                 "/api/v1/live", "/api/v1/sites/minheim/rooms"):
        assert requests.get(url + path, timeout=10).status_code == 401, path
    for path in ("/api/v1/sites/minheim/push", "/api/v1/sites/minheim/commands"):
        assert requests.post(url + path, json={"action": "lockdown"}, timeout=10).status_code == 401
    r = requests.post(url + "/sites/minheim/actions", data={"action": "lockdown"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_the_right_password_opens_the_dashboard_and_a_wrong_one_does_not(env: Env, auth: Auth) -> None:
    s, token = login_form(env.url)
    r = s.post(env.url + "/login", data={"name": "anna", "password": "not-the-password", "csrf": token},
               allow_redirects=False, timeout=10)
    assert r.status_code == 401 and "Benutzername oder Passwort falsch" in r.text
    assert "torwart_session" not in s.cookies
    r = s.post(env.url + "/login", data={"name": "anna", "password": env.passwords["anna"], "csrf": token,
                                         "next": "/sites/minheim"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/sites/minheim"
    cookie = r.headers["set-cookie"]
    assert "torwart_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = s.get(env.url + "/sites/minheim", timeout=10)
    assert page.status_code == 200 and "Site minheim" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    # An unknown user is refused the same way, and no open redirect after login.
    r = s.post(env.url + "/login", data={"name": "nobody", "password": "x", "csrf": token}, timeout=10)
    assert r.status_code == 401
    fresh, token = login_form(env.url)
    r = fresh.post(env.url + "/login", data={"name": "ben", "password": env.passwords["ben"], "csrf": token,
                                             "next": "//evil.example/"}, allow_redirects=False, timeout=10)
    assert r.headers["location"] == "/"


def test_a_login_without_the_forms_token_is_refused(env: Env) -> None:
    r = requests.post(env.url + "/login", data={"name": "anna", "password": env.passwords["anna"], "csrf": "x"},
                      allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "torwart_session" not in r.cookies


def test_failed_logins_are_rate_limited_per_user(env: Env, auth: Auth) -> None:
    s, token = login_form(env.url)

    def attempt(password: str) -> requests.Response:
        return s.post(env.url + "/login", data={"name": "carl", "password": password, "csrf": token},
                      allow_redirects=False, timeout=10)

    for _ in range(Auth.USER_LIMIT):
        assert attempt("wrong-password").status_code == 401
    r = attempt(env.passwords["carl"])  # the right one, but too late
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
    assert "Zu viele Fehlversuche" in r.text
    # Another user from the same address is not locked out by carl's failures.
    assert env.login("anna").get(env.url + "/api/v1/me", timeout=10).status_code == 200
    now = time.time()
    auth.clock = lambda: now + 61  # a minute later
    assert attempt(env.passwords["carl"]).status_code == 303


def test_a_session_ends_after_session_hours(env: Env, auth: Auth) -> None:
    s = env.login("anna")
    assert s.get(env.url + "/api/v1/me", timeout=10).status_code == 200
    hours = env.hub.service.cfg.http.session_hours
    now = time.time()
    auth.clock = lambda: now + hours * 3600 - 60
    assert s.get(env.url + "/api/v1/me", timeout=10).status_code == 200
    auth.clock = lambda: now + hours * 3600 + 1
    assert s.get(env.url + "/api/v1/me", timeout=10).status_code == 401
    r = s.get(env.url + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_logout_ends_the_session_for_every_copy_of_the_cookie(env: Env) -> None:
    s = env.login("anna")
    copy = requests.Session()
    copy.cookies.update(s.cookies)
    csrf = s.headers["X-CSRF-Token"]
    # Without the CSRF token the logout is refused and the session lives on.
    r = s.post(env.url + "/logout", data={}, headers={"X-CSRF-Token": ""}, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    assert copy.get(env.url + "/api/v1/me", timeout=10).status_code == 200
    r = s.post(env.url + "/logout", data={"csrf": str(csrf)}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert copy.get(env.url + "/api/v1/me", timeout=10).status_code == 401
    sse = SseReader(copy, env.url + "/api/v1/live")
    assert sse.status == 401
    sse.close()


def test_state_changing_requests_without_the_csrf_token_are_refused(env: Env) -> None:
    s = env.login("boss")
    csrf = str(s.headers.pop("X-CSRF-Token"))
    url = env.url + "/api/v1/sites/minheim/commands"
    assert s.post(url, json={"action": "lockdown"}, timeout=10).status_code == 403
    assert s.post(url, json={"action": "lockdown"}, headers={"X-CSRF-Token": "forged"}, timeout=10).status_code == 403
    assert s.post(env.url + "/api/v1/sites/minheim/push", timeout=10).status_code == 403
    r = s.post(env.url + "/sites/minheim/actions", data={"action": "lockdown", "confirmed": "1"}, timeout=10)
    assert r.status_code == 403
    # Another session's token is no good either.
    other = env.login("boss")
    assert s.post(url, json={"action": "lockdown_end"}, headers={"X-CSRF-Token": str(other.headers["X-CSRF-Token"])},
                  timeout=10).status_code == 403
    # With its own token the request goes through.
    r = s.post(url, json={"action": "lockdown_end"}, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert r.status_code == 202 and r.json()["action"] == "lockdown_end"


def test_the_form_fallback_asks_for_confirmation_before_it_acts(env: Env) -> None:
    s = env.login("anna")
    csrf = str(s.headers["X-CSRF-Token"])
    form = {"csrf": csrf, "action": "unlock", "door": "eingang", "seconds": "5"}
    r = s.post(env.url + "/sites/minheim/actions", data=form, timeout=10)
    assert r.status_code == 200 and "Bitte bestätigen" in r.text and "eingang" in r.text
    assert 'name="confirmed" value="1"' in r.text
    r = s.post(env.url + "/sites/minheim/actions", data={**form, "confirmed": "1"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/sites/minheim?sent=unlock"


def test_the_bearer_admin_token_keeps_working_without_csrf(env: Env) -> None:
    headers = {"Authorization": f"Bearer {env.county.admin_token}"}
    r = requests.get(env.url + "/api/v1/sites", headers=headers, timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert [s["id"] for s in doc] == ["minheim", "wittlich"]
    assert {"state", "cache_published", "cache_retained"} <= set(doc[0])
    r = requests.post(env.url + "/api/v1/sites/minheim/push", headers=headers, timeout=10)
    assert r.status_code == 202 and r.json()["published_version"] >= doc[0]["cache_published"]
    r = requests.post(env.url + "/api/v1/sites/minheim/commands", json={"action": "unlock", "door": "eingang"},
                      headers=headers, timeout=10)
    assert r.status_code == 202
    assert requests.post(env.url + "/api/v1/sites/minheim/commands", json={"action": "unlock", "door": "keller"},
                         headers=headers, timeout=10).status_code == 400
    assert requests.get(env.url + "/api/v1/sites", headers={"Authorization": "Bearer wrong"},
                        timeout=10).status_code == 401
