"""Several hub nodes: real ``torwart-hub run`` processes on one config and one store (each
multi-node test once on SQLite, once on PostgreSQL: ``hub_store``), a real Mosquitto, the
HTTP fake of the booking platform. Exactly one node leads and syncs; events are stored
once per (site, stream, seq) whichever node takes them; a browser on a follower sees what
another node ingested; a SIGKILLed leader is replaced within ``leader_lease_seconds`` and
the booking sync goes on there, never twice at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import re
import signal
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import tomli_w

from hub import config as hub_config
from hub.store import Lease, open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, make_county
from testkit.dashboard import SseReader
from testkit.demo_county import hub_command
from testkit.demo_procs import Child
from testkit.mqttclient import TestClient
from testkit.util import free_port, port_open, wait_for
from wire import messages as m
from wire.topics import Kind, topic

LEASE = 3.0


@dataclass
class Node:
    name: str
    port: int
    child: Child

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace")


def several_nodes_county(tmp_path: Path, broker: Mosquitto, platform: BookingPlatform,
                         store: str | None = None) -> County:
    """A county whose nodes share one store of kind ``store`` (``make_county``'s)."""
    county = make_county(tmp_path, broker, platform, store=store)
    doc = tomllib.loads(county.hub_config_path.read_text())
    doc["mqtt"]["shared_subscription"] = True
    doc["hub"]["leader_lease_seconds"] = LEASE
    doc["booking"]["sync_interval_seconds"] = 5
    county.hub_config_path.write_text(tomli_w.dumps(doc))
    return county


def hub(county: County, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*hub_command(), *args, "--config", str(county.hub_config_path)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


@contextlib.contextmanager
def running(county: County, names: list[str]) -> Iterator[dict[str, Node]]:
    """``torwart-hub run --node NAME --listen 127.0.0.1:PORT`` for each name, all on the
    county's one config; each node up when its HTTP port answers."""
    nodes: dict[str, Node] = {}
    try:
        for name in names:
            port = free_port()
            argv = [*hub_command(), "run", "--config", str(county.hub_config_path), "--node", name,
                    "--listen", f"127.0.0.1:{port}"]
            nodes[name] = Node(name, port, Child(name, argv, county.dir / "logs" / f"{name}.log").start())
        for n in nodes.values():
            def up(n: Node = n) -> bool:
                n.child.check()
                return port_open("127.0.0.1", n.port)
            wait_for(up, 60, interval=0.1, what=f"node {n.name} serving HTTP")
        yield nodes
    finally:
        for n in nodes.values():
            n.child.stop()


def lease_now(url: str) -> Lease | None:
    with open_store(url) as store:
        lease = store.lease()
    return lease if lease is not None and lease.holder is not None and lease.expires_at > time.time() else None


def roles(url: str, names: list[str]) -> dict[str, str]:
    with open_store(url) as store:
        return {r.id: r.role for r in store.nodes() if r.id in names and time.time() - r.last_seen < 2 * LEASE}


def gains(nodes: dict[str, Node]) -> list[tuple[str, int]]:
    """(node, term) of every "is the leader now" in the nodes' logs."""
    return [(n.name, int(t)) for n in nodes.values()
            for t in re.findall(r"node \S+ is the leader now \(term (\d+)\)", n.log())]


def event(seq: int) -> bytes:
    return m.encode(m.DoorOpened(id=uuid.uuid4().hex, site="minheim", seq=seq, boot="b",
                                 ts=1_800_000_000.0 + seq, clock_synced=True, door="eingang"))


def kill(node: Node) -> float:
    """SIGKILL the node (its whole process group); the moment it was sent."""
    assert node.child.proc is not None
    t = time.time()
    os.killpg(node.child.proc.pid, signal.SIGKILL)
    node.child.proc.wait(10)
    return t


def no_two_syncs_at_once(platform: BookingPlatform) -> list[float]:
    """The gaps between the platform's listing requests (one per sync here: one page)."""
    at = sorted(c.at for c in platform.listing_calls())
    return [b - a for a, b in itertools.pairwise(at)]


@pytest.mark.slow
def test_three_nodes_one_leader_events_once_live_on_a_follower_and_a_killed_leader_replaced(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, mqtt_client: type[TestClient],
    hub_store: str,
) -> None:
    county = several_nodes_county(tmp_path, broker, booking_platform, hub_store)
    url = hub_config.load(county.hub_config_path).hub.store_url
    now = dt.datetime.now(dt.UTC)
    booking_platform.add("bk-before", county.resource("minheim"), "m-1", now, now + dt.timedelta(hours=1))
    names = ["n1", "n2", "n3"]
    with running(county, names) as nodes:
        # --- exactly one leader ---------------------------------------------------------------
        wait_for(lambda: sorted(roles(url, names).values()) == ["follower", "follower", "leader"], 20,
                 interval=0.1, what="one leader and two followers")
        lease = lease_now(url)
        assert lease is not None and lease.holder in names
        leader = nodes[lease.holder]
        assert gains(nodes) == [(leader.name, lease.term)]
        wait_for(lambda: any(c for c in booking_platform.listing_calls()), 20, what="the leader's first sync")
        out = hub(county, "nodes")
        assert out.returncode == 0, out.stderr
        lines = [ln for ln in out.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in names]
        assert len(lines) == 3 and sum(" * " in f" {ln} " for ln in lines) == 1
        assert f"leader: {leader.name} (term {lease.term}" in out.stdout

        # --- events once per (site, stream, seq), whichever node takes them ----------------------
        site = mqtt_client(broker)  # type: ignore[call-arg]
        site.subscribe(topic("minheim", Kind.EVENT_ACK))
        for seq in [*range(1, 301), *range(1, 51)]:  # the first 50 sent twice (a resend)
            site.publish(topic("minheim", Kind.EVENT), event(seq))
        wait_for(lambda: any(m.decode(x.payload, m.EventAck).upto == 300 for x in site.drain()), 60,
                 what="ack up to 300")
        with open_store(url) as store:
            stored = store.events(site_id="minheim", limit=1000)
        assert sorted(e.seq for e in stored) == list(range(1, 301))

        # --- a browser on a follower sees what other nodes ingested -----------------------------
        follower = next(n for n in nodes.values() if n is not leader)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {county.admin_token}"
        sse = SseReader(session, follower.url + "/api/v1/live?site=minheim&view=json")
        try:
            assert sse.status == 200
            sse.wait(lambda e: e.event == "site", 20)  # the first frame: the state as it is
            with open_store(url) as store:
                mark = store.last_change()
            for seq in range(301, 316):
                site.publish(topic("minheim", Kind.EVENT), event(seq))
                sse.wait(lambda e, seq=seq: e.event == "site" and any(
                    ev["seq"] == seq for ev in e.json()["events"]), 20)
        finally:
            sse.close()
        with open_store(url) as store:
            relayed = [c for c in store.changes_since(mark) if c.what == "events" and c.node != follower.name]
        assert relayed  # some of the 15 were taken by another node, and still reached this browser

        # --- the leader dies: another takes over within the lease, and syncs there ---------------
        killed_at = kill(leader)
        taken = wait_for(lambda: (x := lease_now(url)) is not None and x.holder != leader.name and x, LEASE + 10,
                         interval=0.05, what="another node taking the lease")
        assert taken.term == lease.term + 1 and taken.previous == leader.name
        assert taken.acquired_at - killed_at <= LEASE + 1.0
        heir = nodes[taken.holder]
        wait_for(lambda: (heir.name, taken.term) in gains(nodes), 10, what="the takeover in the heir's log")
        assert re.search(rf"node {heir.name} is the leader now \(term {taken.term}\): [\d.]+ s without a leader "
                         rf"since node {leader.name}'s lease ended", heir.log())
        # Events published after the death: the broker hands the dead node's persistent
        # session its share, and they wait there; the site sends what is not acknowledged
        # again (as the agent does after resend_seconds without progress), and the live
        # nodes store each once.
        new = list(range(316, 346))
        for seq in new:
            site.publish(topic("minheim", Kind.EVENT), event(seq))
        resent = [time.monotonic()]

        def all_stored() -> bool:
            with open_store(url) as store:
                have = {e.seq for e in store.events(site_id="minheim", limit=1000)}
            if set(new) <= have:
                return True
            if time.monotonic() - resent[0] > 2.0:
                for seq in sorted(set(new) - have):
                    site.publish(topic("minheim", Kind.EVENT), event(seq))
                resent[0] = time.monotonic()
            return False

        wait_for(all_stored, 60, interval=0.2, what="every event after the death stored")
        with open_store(url) as store:
            stored = store.events(site_id="minheim", limit=1000)
        assert sorted(e.seq for e in stored) == list(range(1, 346))  # each once
        booking_platform.add("bk-after", county.resource("minheim"), "m-2", now, now + dt.timedelta(hours=2))
        with open_store(url) as store:
            wait_for(lambda: store.get_booking("bk-after") is not None, 30, interval=0.1,
                     what="the new leader's sync")
        assert len(gains(nodes)) == 2
        others = [n for n in nodes.values() if n is not leader and n is not heir]
        assert all(n.child.running for n in others) and heir.child.running
        assert min(no_two_syncs_at_once(booking_platform)) >= 1.0


def test_two_nodes_a_clean_stop_hands_over_at_once_and_a_name_in_use_is_refused(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, hub_store: str,
) -> None:
    county = several_nodes_county(tmp_path, broker, booking_platform, hub_store)
    url = hub_config.load(county.hub_config_path).hub.store_url
    out = hub(county, "nodes")
    assert out.returncode == 0 and "no hub node has run on this store yet" in out.stdout
    with running(county, ["a", "b"]) as nodes:
        wait_for(lambda: sorted(roles(url, ["a", "b"]).values()) == ["follower", "leader"], 20, interval=0.1,
                 what="one leader and one follower")
        lease = lease_now(url)
        assert lease is not None
        # a third process with a running node's name is refused, and changes nothing
        twin = hub(county, "run", "--node", lease.holder, "--listen", f"127.0.0.1:{free_port()}")
        assert twin.returncode == 1
        assert f"hub node {lease.holder!r} is running already" in twin.stderr and "--node NAME" in twin.stderr
        after = lease_now(url)
        assert after is not None and (after.holder, after.term) == (lease.holder, lease.term)
        assert roles(url, [lease.holder]) == {lease.holder: "leader"}
        leader, other = nodes[lease.holder], next(n for n in nodes.values() if n.name != lease.holder)
        stopped_at = time.time()
        assert leader.child.stop() == 0
        taken = wait_for(lambda: (x := lease_now(url)) is not None and x.holder == other.name and x, LEASE,
                         interval=0.05, what="the other node taking the released lease")
        assert taken.acquired_at - stopped_at < LEASE  # released, not expired
        assert taken.vacant < LEASE / 3 + 1.0
        assert "released the lease" in leader.log()
        out = hub(county, "nodes", "--all")
        assert out.returncode == 0
        assert re.search(rf"^{leader.name}\s.*stopped$", out.stdout, re.M)
        assert f"leader: {other.name}" in out.stdout
        busy = hub(county, "nodes", "--forget", other.name)
        assert busy.returncode == 1 and f"node {other.name!r} is running" in busy.stderr
    out = hub(county, "nodes")
    assert out.returncode == 0 and "no hub node is running" in out.stdout
    # a retired node leaves the list; an unknown one is refused
    out = hub(county, "nodes", "--forget", "a")
    assert out.returncode == 0 and "node a forgotten" in out.stdout
    out = hub(county, "nodes", "--forget", "a")
    assert out.returncode == 1 and "no node 'a' on this store" in out.stderr
    with open_store(url) as store:
        assert [r.id for r in store.nodes()] == ["b"]


@pytest.mark.parametrize(("args", "says"), [
    (["--node", "bad name"], "--node 'bad name': a node's name is"),
    (["--node=-x"], "--node '-x': a node's name is"),
    (["--listen", "nowhere"], "--listen 'nowhere': must be HOST:PORT"),
])
def test_run_refuses_a_bad_node_name_or_listen_address_before_it_starts(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, args: list[str], says: str,
) -> None:
    county = several_nodes_county(tmp_path, broker, booking_platform)
    res = hub(county, "run", *args)
    assert res.returncode in (1, 2) and says in res.stderr
    assert not (county.dir / "hub" / "data" / "hub.sqlite3").exists()  # nothing was created


def test_the_leaders_threads_run_on_the_leader_only_and_move_with_the_lease(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, hub_store: str,
) -> None:
    """In one process (two services as two nodes): the check-in delivery worker runs on the
    leader alone, and starts on the other node when the leader stops; a follower's
    scheduled singleton jobs do not run."""
    import msgspec

    from testkit.county import HubThread

    county = several_nodes_county(tmp_path, broker, booking_platform, hub_store)
    base = hub_config.load(county.hub_config_path)

    def node(n: int) -> hub_config.HubConfig:
        return msgspec.structs.replace(base, http=msgspec.structs.replace(base.http,
                                                                          listen=f"127.0.0.1:{free_port()}"))

    def delivering(t: HubThread) -> bool:
        th = t.service.feedback.delivery._thread
        return th is not None and th.is_alive() and not t.service.feedback.delivery._stopping.is_set()

    with HubThread(county, node(1), node="one") as one:
        wait_for(lambda: one.service.leading and delivering(one), 10, what="one leading and delivering")
        with HubThread(county, node(2), node="two") as two:
            wait_for(lambda: one.service.leadership.peers == 1 and two.service.leadership.peers == 1, 10,
                     what="the nodes seeing each other")
            assert not two.service.leading and not delivering(two)
            ran: list[str] = []
            two.service._as_leader(lambda: ran.append("job"))  # what every scheduled singleton job goes through
            one.service._as_leader(lambda: ran.append("leader's job"))
            wait_for(lambda: ran == ["leader's job"], 10, what="the leader's job")
            assert two.service.call(lambda: list(ran)) == ["leader's job"]  # the follower's never ran
            one.service.stop()
            one.thread.join(15)
            wait_for(lambda: two.service.leading and delivering(two), LEASE + 5, what="two taking over")
            assert not delivering(one)
