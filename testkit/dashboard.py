"""The hub's dashboard from a client's side, for tests and the demo: accounts made with the
real CLI (generated passwords), logins through the real login form, and a reader of the
live stream (Server-Sent Events) on a thread."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from .county import County
from .util import next_matching

_CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


def add_user(county: County, name: str, role: str, sites: str | None = None, *, email: str | None = None) -> str:
    """Create a dashboard account with ``torwart-hub users add``; return its (generated) password."""
    from hub.__main__ import main as hub_main

    password = secrets.token_urlsafe(16)
    pw_file = county.dir / "hub" / f"{name}.password"
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    args = ["users", "add", name, "--role", role, "--password-file", str(pw_file),
            "--config", str(county.hub_config_path)]
    if sites is not None:
        args += ["--sites", sites]
    if email is not None:
        args += ["--email", email]
    if hub_main(args) != 0:
        raise RuntimeError(f"users add {name} failed")
    Path(pw_file).unlink()
    return password


def login_form(base_url: str, session: requests.Session | None = None) -> tuple[requests.Session, str]:
    """GET /login: a session holding the login cookie, and the form's CSRF token."""
    s = session or requests.Session()
    r = s.get(base_url + "/login", timeout=10)
    r.raise_for_status()
    m = _CSRF_INPUT.search(r.text)
    if m is None:
        raise RuntimeError("no CSRF field in the login form")
    return s, m.group(1)


def login(base_url: str, name: str, password: str) -> requests.Session:
    """Log in through the form; raise unless it succeeded. The session carries the cookie;
    ``session.headers["X-CSRF-Token"]`` is set for API POSTs."""
    s, token = login_form(base_url)
    r = s.post(base_url + "/login", data={"name": name, "password": password, "csrf": token},
               allow_redirects=False, timeout=10)
    if r.status_code != 303:
        raise RuntimeError(f"login of {name} failed: HTTP {r.status_code}")
    me = s.get(base_url + "/api/v1/me", timeout=10)
    me.raise_for_status()
    s.headers["X-CSRF-Token"] = me.json()["csrf"]
    return s


@dataclass
class SseEvent:
    event: str
    data: str
    at: float

    def json(self) -> Any:
        return json.loads(self.data)


class SseReader:
    """Reads a text/event-stream response on a thread; ``wait(pred)`` for an event.

    Plain ``http.client`` with the session's cookies, so that ``close()`` can shut the
    socket down under the reading thread (closing a blocked ``requests`` stream waits for
    the next byte)."""

    def __init__(self, session: requests.Session, url: str) -> None:
        u = urlsplit(url)
        self._conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=60)
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        headers = {"Accept": "text/event-stream", **({"Cookie": cookie} if cookie else {})}
        auth = session.headers.get("Authorization")
        if auth:
            headers["Authorization"] = str(auth)
        self._conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers=headers)
        self.response = self._conn.getresponse()
        self.status = self.response.status
        self._q: queue.Queue[SseEvent] = queue.Queue()
        self.seen: list[SseEvent] = []
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        if self.status == 200:
            self._thread.start()

    def _read(self) -> None:
        event, data = "message", list[str]()
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    return
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if data:
                        self._q.put(SseEvent(event, "\n".join(data), time.monotonic()))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        except (OSError, ValueError, http.client.HTTPException):
            pass  # closed under us

    def wait(self, pred: Callable[[SseEvent], bool], timeout: float = 10.0) -> SseEvent:
        """The next event arriving within ``timeout`` for which ``pred`` holds (events that
        do not match are skipped; all are kept in ``seen``)."""
        def seen(ev: SseEvent) -> bool:
            self.seen.append(ev)
            return pred(ev)

        return next_matching(self._q, seen, timeout, "matching live event")

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(5)
        self._conn.close()
