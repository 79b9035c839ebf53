"""The chaos run's TCP proxy (testkit/tcpproxy.py): it forwards, cuts a link (dropped or
blackholed) and refuses new connections until healed, in-process and as a child process."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from testkit.tcpproxy import ProxyFleet, TcpProxy
from testkit.util import wait_for


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server on a free loopback port."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    stop.set()
    srv.close()


def roundtrip(port: int, data: bytes = b"hello", timeout: float = 2.0) -> bytes:
    """What comes back; b"" when the connection is closed or reset on us."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            while len(got) < len(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    return got


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except OSError:
        return True


def test_the_proxy_forwards_cuts_refuses_and_heals(echo: int) -> None:
    with TcpProxy("127.0.0.1", echo) as p:
        assert roundtrip(p.port, b"x" * 200_000) == b"x" * 200_000
        s = socket.create_connection(("127.0.0.1", p.port), timeout=2)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        p.cut()
        assert closed(s)  # the open connection is dropped
        s.close()
        assert roundtrip(p.port) == b""  # and a new one is closed at once
        p.heal()
        assert roundtrip(p.port) == b"hello"
        assert p.stats.cuts == 1 and p.stats.refused >= 1


def test_a_blackholed_link_stays_open_but_carries_nothing(echo: int) -> None:
    with TcpProxy("127.0.0.1", echo) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=0.5)
        s.sendall(b"a")
        assert s.recv(1) == b"a"
        p.cut(blackhole=True)
        s.sendall(b"lost")
        with pytest.raises(TimeoutError):
            s.recv(4)
        wait_for(lambda: p.stats.dropped_bytes >= 4, 5, what="the bytes dropped")
        p.heal()
        assert closed(s)  # healed: the stale connection goes, a new one works
        s.close()
        assert roundtrip(p.port) == b"hello"


def test_a_fleet_in_its_own_process_is_controlled_over_its_stdin(echo: int) -> None:
    fleet = ProxyFleet("127.0.0.1", echo, ["site-a", "site-b"])
    try:
        assert roundtrip(fleet.ports["site-a"]) == b"hello"
        fleet.cut("site-a")
        assert roundtrip(fleet.ports["site-a"]) == b""
        assert roundtrip(fleet.ports["site-b"]) == b"hello"  # the other site's link is untouched
        fleet.heal("site-a")
        assert roundtrip(fleet.ports["site-a"]) == b"hello"
        stats = fleet.stats()
        assert stats["site-a"]["cuts"] == 1 and stats["site-b"]["cuts"] == 0
    finally:
        with contextlib.suppress(Exception):
            assert fleet.stop() == 0
