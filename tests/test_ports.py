"""Ports of test and demo servers (issue #10, item 18): outside the kernel's ephemeral
range, so that a server restarted on its port never finds it taken by the local end of
some outgoing connection made while it was down."""

from __future__ import annotations

import socket
from pathlib import Path

from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county
from testkit.tcpproxy import TcpProxy
from testkit.util import ephemeral_range, free_port, port_candidates, worker_share


def kernel_range() -> tuple[int, int]:
    lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return lo, hi


def outside(port: int) -> bool:
    lo, hi = kernel_range()
    return not lo <= port <= hi and port >= 1024


def test_free_ports_lie_outside_the_kernels_ephemeral_range_and_are_bindable() -> None:
    ports = [free_port() for _ in range(40)]
    assert all(outside(p) for p in ports), [p for p in ports if not outside(p)]
    assert len(set(ports)) == len(ports)  # one process never gets the same port twice
    assert len({p // 1000 for p in ports}) > 1  # spread at random: side-by-side runs rarely meet
    for p in ports[:5]:
        with socket.create_server(("127.0.0.1", p)):
            pass


def test_a_port_in_use_is_never_handed_out(tmp_path: Path) -> None:
    lo, _ = kernel_range()
    taken = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    try:
        held = {s.getsockname()[1] for s in taken}
        # Hold a good share of the candidates: none of them may come back.
        for p in range(20000, min(lo, 20000 + 400)):
            try:
                taken.append(socket.create_server(("127.0.0.1", p)))
                held.add(p)
            except OSError:
                pass
        got = [free_port() for _ in range(200)]
        assert not held & set(got)
    finally:
        for s in taken:
            s.close()


def test_the_candidate_range_follows_the_kernels_range() -> None:
    assert ephemeral_range() == kernel_range()
    assert port_candidates((32768, 60999)) == range(20000, 32768)
    assert port_candidates((1024, 50000)) == range(50001, 65536)  # no room below: above
    assert port_candidates((20500, 65000)) == range(1024, 20500)  # little room either side: the larger
    assert len(port_candidates((1024, 65535))) > 0  # nothing outside: anywhere, rather than fail


def test_servers_the_tests_restart_on_their_port_listen_outside_the_ephemeral_range(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    assert outside(broker.port)
    with BookingPlatform() as platform, TcpProxy("127.0.0.1", broker.port) as proxy:
        assert outside(int(platform.base_url.rsplit(":", 1)[1]))
        assert outside(proxy.port)
        county = make_county(tmp_path / "county", broker, platform, ("minheim",))
        assert outside(county.http_port)


def test_test_workers_pick_ports_from_disjoint_shares_that_cover_the_range() -> None:
    ports = range(20000, 32768)
    assert worker_share(ports, {}) == ports
    assert worker_share(ports, {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "1"}) == ports
    shares = [worker_share(ports, {"PYTEST_XDIST_WORKER": f"gw{k}", "PYTEST_XDIST_WORKER_COUNT": "3"})
              for k in range(3)]
    assert sorted(p for share in shares for p in share) == list(ports)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(shares) for b in shares[i + 1:])
    assert worker_share(ports, {"PYTEST_XDIST_WORKER": "master", "PYTEST_XDIST_WORKER_COUNT": "2"}) == ports
