"""schemathesis against the live hub: the OpenAPI document the running hub serves (generated
from its routes and types) is loaded over HTTP with the session of a user this test makes, and
every documented operation is fuzzed with that session (cookie + CSRF token, given to
schemathesis as the document's security schemes): examples, boundary values, valid and invalid
inputs. No answer may be a 5xx, and every answer must be documented: status code, content type,
body schema, headers; invalid input must be refused, and so must a request without its
credentials. Once as an admin, once as a caretaker (fewer sites, no names, fewer actions;
without the coverage phase, which is about parameters, not roles).

Before the run, the site ``minheim`` reports what a site reports (a status, a door state,
occupancy with a member present, one event of every type), so that the answers checked
against their schemas carry real page data, not only empty sites.

One check is left out: ``positive_data_acceptance`` (a request valid by the schema must
succeed). The schema cannot say which doors, rooms and readers a site has or which members
exist, so the fuzzer's made-up names are rightly refused with a documented 400.

The hub talks to this test's own Mosquitto (no site agent listens): the commands, pushes and
enrollments the fuzzer sends end there and in this test's store. The run is bounded
(``RUNS``: examples per operation; one event read from the live stream) and deterministic
(schemathesis' deterministic generation, no example database). Stateful testing (links
between operations) is off: the one id an answer hands on (an enrollment's) is given to the
fuzzer directly, from an enrollment the test starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from testkit.dashboard import add_user, login
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic

from ..strategies import struct
from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)

#: Per role: the phases and the most examples per operation in the fuzzing phase. The
#: coverage phase (boundary values of every parameter) runs once, as the admin who may reach
#: every operation; the caretaker's run checks what differs for a role: refusals, no names.
RUNS = {"admin": ("examples,coverage,fuzzing", 10), "caretaker": ("examples,fuzzing", 5)}
SITE = "minheim"

pytest.importorskip("schemathesis", reason="needs schemathesis (scripts/setup --dev)")


@dataclass
class Fuzzer:
    """A user this test made, logged in, and the id of an enrollment an admin started."""

    role: str
    session: requests.Session
    enrollment: str

    @property
    def session_id(self) -> str:
        return str(self.session.cookies["torwart_session"])

    @property
    def csrf(self) -> str:
        return str(self.session.headers["X-CSRF-Token"])


def one_event_of_each_type() -> list[m.Event]:
    """One valid event of every type (the same ones every run)."""
    drawn: list[m.Event] = []

    @settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.tuples(*(struct(cls) for cls in m.EVENT_TYPES.values())))
    def draw(events: tuple[m.Event, ...]) -> None:
        drawn[:] = events

    draw()
    return drawn


def report_like_a_site(env: Env) -> None:
    """``minheim`` online, a door state, a member present, one event of every type."""
    now = time.time()
    env.site.publish(topic(SITE, Kind.STATUS), m.encode(m.Status(
        state="online", ts=now, boot="b", software="torwart-edge test", cache_version=1, clock_synced=True,
        outbox_pending=2)), retain=True)
    env.site.publish(topic(SITE, Kind.DOOR, "eingang"), m.encode(m.DoorState(
        door="eingang", locked=False, open=True, alarm="held_open", mode="normal", ts=now)), retain=True)
    env.occupancy(SITE, 1, [env.who])
    events = one_event_of_each_type()
    for i, drawn in enumerate(events):
        ev = msgspec.structs.replace(drawn, site=SITE, seq=1000 + i, stream=UNSET, stream_base=UNSET, ts=now - i)
        env.site.publish(topic(SITE, Kind.EVENT), m.encode(ev))
    svc = env.hub.service

    def stored() -> bool:
        st_ = svc.call(lambda: svc.store.site_state(SITE))
        return st_ is not None and st_.max_seq >= 1000 + len(events) - 1 and st_.online

    wait_for(stored, 15, what="the site's reports stored")


@pytest.fixture(scope="module")
def passwords(env: Env) -> dict[str, str]:
    """The users this test makes (role → password), after the site reported."""
    report_like_a_site(env)
    return {"admin": add_user(env.county, "fuzz-admin", "admin"),
            "caretaker": add_user(env.county, "fuzz-caretaker", "caretaker", SITE)}


@pytest.fixture(scope="module")
def enrollment(env: Env, passwords: dict[str, str]) -> str:
    """The id of an enrollment the admin started."""
    s = login(env.url, "fuzz-admin", passwords["admin"])
    r = s.post(env.url + f"/api/v1/sites/{SITE}/enroll", json={"member": "m-1", "reader": "desk", "seconds": 5},
               timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


@pytest.fixture(params=["admin", "caretaker"])
def fuzzer(request: pytest.FixtureRequest, env: Env, passwords: dict[str, str], enrollment: str) -> Fuzzer:
    role: str = request.param
    return Fuzzer(role, login(env.url, f"fuzz-{role}", passwords[role]), enrollment)


def _config(path: Path, fuzzer: Fuzzer) -> Path:
    path.write_text(f"""
max-stream-events = 1
request-timeout = 10
workers = 1

[generation]
deterministic = true

[auth.openapi.session]
api_key = "{fuzzer.session_id}"

[auth.openapi.csrf]
api_key = "{fuzzer.csrf}"

[dictionaries.enrollments]
values = ["{fuzzer.enrollment}"]

[[operations]]
include-name = "GET /api/v1/enrollments/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "enrollments", probability = 0.5 }} }}
""")
    return path


def test_every_documented_operation_survives_schemathesis(env: Env, fuzzer: Fuzzer, tmp_path: Path) -> None:
    # The document as the live hub serves it to this user (it needs a login too).
    r = fuzzer.session.get(env.url + "/api/v1/openapi.json", timeout=10)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    document = tmp_path / "openapi.json"
    document.write_bytes(r.content)
    config = _config(tmp_path / "schemathesis.toml", fuzzer)
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", str(document), "--url", env.url,
        "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--phases", RUNS[fuzzer.role][0],
        "--max-examples", str(RUNS[fuzzer.role][1]), "--no-color", "--report", "junit", "--report-dir", str(tmp_path),
    ]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
                         env={k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")})
    took = time.monotonic() - t0
    print(out.stdout[-30000:], out.stderr[-5000:])
    print(f"schemathesis over every operation: {took:.1f} s")
    assert out.returncode == 0, out.stdout[-10000:] + out.stderr[-3000:]
    operations = sum(len(ops) for ops in doc["paths"].values())
    assert f"{operations} selected / {operations} total" in out.stdout
    assert f"Tested: {operations}" in out.stdout
