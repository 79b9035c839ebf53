"""How the hub's HTTP side takes requests: bodies and query strings are parsed into their
types, and one that does not fit is refused with 400 and a message naming the field, with
nothing sent to the site; the login guard answers before any handler, but leaves unknown
paths and methods to the router (404/405), and takes the CSRF token from a header or a
form field."""

from __future__ import annotations

import requests

from testkit.mqttclient import TestClient
from wire.topics import Kind, topic

from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)
from .test_dashboard_lockdown import command_body, commands_fixture  # noqa: F401 (the commands fixture)


def test_a_body_that_does_not_fit_is_refused_naming_the_field_and_sends_nothing(env: Env,
                                                                                commands: TestClient) -> None:
    boss = env.login("boss")
    url = env.url + "/api/v1/sites/minheim/commands"
    refused = {
        "action must be one of": {"action": "open-sesame", "door": "eingang"},
        "missing required field `action`": {"door": "eingang"},
        "`$.door`": {"action": "unlock", "door": 7},
        "seconds must be 1..3600": {"action": "unlock", "door": "eingang", "seconds": "0"},
        "`$.seconds`": {"action": "unlock", "door": "eingang", "seconds": 2.5},
        "`$.room`": {"action": "checkout_all", "room": ""},
    }
    for message, body in refused.items():
        r = boss.post(url, json=body, timeout=10)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    enroll = env.url + "/api/v1/sites/minheim/enroll"
    for message, body in {"missing required field `member`": {"reader": "desk"}, "seconds must be 1..120": {
            "member": "m-1", "reader": "desk", "seconds": 121}}.items():
        r = boss.post(enroll, json=body, timeout=10)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    # A whole number as a string is still a whole number, and unknown fields are ignored.
    r = boss.post(url, json={"action": "unlock", "door": "eingang", "seconds": "5", "csrf": "x"}, timeout=10)
    assert r.status_code == 202, r.text
    # The first command the site saw is that one: none of the refused ones was sent.
    first = command_body(commands.expect(topic("minheim", Kind.COMMAND), timeout=10).payload)
    assert (first["action"], first["id"], first["seconds"]) == ("unlock", r.json()["id"], 5)


def test_a_query_string_that_does_not_fit_is_refused_naming_the_parameter(env: Env) -> None:
    boss = env.login("boss")
    for path, message in (("/api/v1/events?limit=1001", "limit must be 1..1000"),
                          ("/api/v1/events?limit=many", "`$.limit`"),
                          ("/api/v1/events?since=nan", "since: not a time"),
                          ("/api/v1/events?until=inf", "until: not a time"),
                          ("/api/v1/sites/minheim/noshows?days=61", "days must be 1..60"),
                          ("/api/v1/live?view=", "view must be one of alerts, card, detail, json")):
        r = boss.get(env.url + path, timeout=10)
        assert r.status_code == 400 and message in r.json()["error"], (path, r.text)


def test_the_guard_leaves_unknown_paths_and_methods_to_the_router(env: Env) -> None:
    for method, path, status in (("GET", "/no/such/page", 404), ("GET", "/api/v1/nothing", 404),
                                 ("GET", "/logout", 405), ("DELETE", "/api/v1/me", 405)):
        r = requests.request(method, env.url + path, allow_redirects=False, timeout=10)
        assert r.status_code == status, (method, path, r.status_code)
    # A page asked for without a login comes back after it; a form sent without one does not.
    r = requests.get(env.url + "/sites/minheim?lang=en", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/sites/minheim"
    r = requests.post(env.url + "/sites/minheim/actions", data={"action": "unlock"}, allow_redirects=False,
                      timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_the_csrf_token_may_come_as_a_header_or_a_form_field(env: Env, commands: TestClient) -> None:
    anna = env.login("anna")
    csrf = str(anna.headers.pop("X-CSRF-Token"))
    form = {"action": "unlock", "door": "eingang", "seconds": "5", "confirmed": "1"}
    r = anna.post(env.url + "/sites/minheim/actions", data=form, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "Das dürfen Sie hier nicht" in r.text
    r = anna.post(env.url + "/sites/minheim/actions", data=form, headers={"X-CSRF-Token": csrf},
                  allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/sites/minheim?sent=unlock"
    first = command_body(commands.expect(topic("minheim", Kind.COMMAND), timeout=10).payload)
    assert (first["action"], first["door"]) == ("unlock", "eingang")
    # A file in the form is no action form: refused, nothing sent.
    r = anna.post(env.url + "/sites/minheim/actions", data={**form, "csrf": csrf},
                  files={"door": ("door.txt", b"eingang")}, allow_redirects=False, timeout=10)
    assert r.status_code == 400
    assert commands.drain() == []


def test_an_enroll_through_the_commands_route_without_seconds_gets_the_default_window(env: Env) -> None:
    """Fields left out of a command keep their action's default (here: an enrollment's 60 s),
    as before bodies were typed; a typed body must not turn "not given" into null."""
    boss = env.login("boss")
    r = boss.post(env.url + "/api/v1/sites/minheim/commands",
                  json={"action": "enroll", "member": "m-1", "reader": "front-in"}, timeout=10)
    assert r.status_code == 202, r.text
    assert (r.json()["member"], r.json()["seconds"]) == ("m-1", 60)
