"""Every request body has a limit, enforced while it streams in: a chunked body (no
Content-Length) of many MB sent to the webhook, the login form, an action form or the JSON
API is answered 413 long before it has all been sent, so the hub never buffers it; a
Content-Length over the limit is answered 413 without waiting for the body."""

from __future__ import annotations

import select
import socket
import time

import pytest

from hub.web_limits import body_limit

from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)

TOTAL = 32 * 1024 * 1024
CHUNK = b"a=" + b"x" * (64 * 1024 - 2)


def _connect(env: Env) -> socket.socket:
    return socket.create_connection(("127.0.0.1", env.county.http_port), timeout=10)


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(sock: socket.socket, timeout: float = 15.0) -> int:
    """The status code of the response on ``sock`` (0 when the connection closed without one)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                break
            data += more
    except ConnectionResetError:
        pass
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def send_chunked(env: Env, path: str, headers: dict[str, str]) -> tuple[int, int]:
    """POST TOTAL bytes as a chunked body, stopping as soon as the hub answers or stops
    reading; return (status, bytes of body sent)."""
    sock = _connect(env)
    sent = 0
    try:
        sock.sendall(_head(path, {**headers, "Transfer-Encoding": "chunked"}))
        try:
            while sent < TOTAL:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
                sent += len(CHUNK)
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # reset or timed out: the hub stopped reading
            pass
        return _status(sock), sent
    finally:
        sock.close()


def _kinds(env: Env) -> dict[str, tuple[str, dict[str, str]]]:
    """Each kind of endpoint that takes a body, with what it takes to get past its login."""
    s = env.login("boss")
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies)
    form = "application/x-www-form-urlencoded"
    return {
        "webhook": ("/api/v1/webhooks/booking", {"Content-Type": "application/json",
                                                 "X-Torwart-Signature": "sha256=" + "00" * 32}),
        "login": ("/login", {"Content-Type": form}),
        "action form": ("/sites/minheim/actions", {"Content-Type": form, "Cookie": cookie}),
        "api": ("/api/v1/sites/minheim/commands", {"Content-Type": "application/json",
                                                    "Authorization": f"Bearer {env.county.admin_token}"}),
    }


@pytest.mark.parametrize("kind", ["webhook", "login", "action form", "api"])
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(env: Env, kind: str) -> None:
    path, headers = _kinds(env)[kind]
    status, sent = send_chunked(env, path, headers)
    assert status == 413, f"{kind}: HTTP {status} after {sent} bytes"
    assert sent < TOTAL // 2, f"{kind}: the hub read {sent} bytes before answering"


@pytest.mark.parametrize("kind", ["webhook", "login", "action form", "api"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body(env: Env, kind: str) -> None:
    path, headers = _kinds(env)[kind]
    sock = _connect(env)
    try:
        t0 = time.monotonic()
        sock.sendall(_head(path, {**headers, "Content-Length": str(200 * 1024 * 1024)}))
        assert _status(sock, timeout=10) == 413, kind
        assert time.monotonic() - t0 < 5
    finally:
        sock.close()


def test_each_endpoint_has_its_own_limit(env: Env) -> None:
    assert body_limit("/api/v1/webhooks/booking") == 64 * 1024
    assert body_limit("/login") == body_limit("/sites/minheim/actions") == 8 * 1024
    assert body_limit("/api/v1/sites/minheim/commands") == 16 * 1024
    # Just under the API's limit is still read and judged (a command body of 16 KiB is no JSON object).
    sock = _connect(env)
    try:
        body = b'"' + b"x" * (16 * 1024 - 2) + b'"'
        sock.sendall(_head("/api/v1/sites/minheim/commands", {
            "Content-Type": "application/json", "Authorization": f"Bearer {env.county.admin_token}",
            "Content-Length": str(len(body))}) + body)
        assert _status(sock) == 400
    finally:
        sock.close()
