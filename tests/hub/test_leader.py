"""The leader's lease as a node runs it (hub/leader.py), over a real SQLite store shared by
several ``Leadership`` objects: one leader at a time, a clean stop hands over at once, a
dead leader is replaced within one lease time, a leader whose renewal is stuck in the
store stops at once (fencing), and a second process with a running node's name is refused."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config import BookingSection, HubConfig, HubSection, MqttSection
from hub.leader import Leadership, NodeNameTaken
from hub.store import Lease, open_store
from testkit.util import wait_for

LEASE = 1.5


def config(tmp_path: Path, lease: float = LEASE) -> HubConfig:
    return HubConfig(hub=HubSection(data_dir=str(tmp_path), signing_key_file=str(tmp_path / "signing.key"),
                                    leader_lease_seconds=lease),
                     mqtt=MqttSection(host="127.0.0.1"), booking=BookingSection(adapter="rest"))


class Node:
    """A Leadership with a record of what it was told."""

    def __init__(self, cfg: HubConfig, name: str) -> None:
        self.gained: list[tuple[int, float]] = []
        self.lost: list[tuple[int, str, float]] = []
        self.lead = Leadership(cfg, name, on_gain=self._gain, on_loss=self._loss)
        self.name = name

    def _gain(self, lease: Lease) -> None:
        self.gained.append((lease.term, time.monotonic()))

    def _loss(self, term: int, why: str) -> None:
        self.lost.append((term, why, time.monotonic()))

    def start(self, cfg: HubConfig) -> Node:
        with open_store(cfg.hub.store_url) as store:
            self.lead.claim(store)
        self.lead.start()
        return self


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[HubConfig]:
    c = config(tmp_path)
    open_store(c.hub.store_url).close()
    yield c


def test_one_of_three_nodes_leads_and_a_clean_stop_hands_over_at_once(cfg: HubConfig) -> None:
    nodes = [Node(cfg, f"n{i}").start(cfg) for i in range(3)]
    try:
        leader = wait_for(lambda: [n for n in nodes if n.lead.leading], 10, what="a leader")
        assert len(leader) == 1
        first = leader[0]
        wait_for(lambda: all(n.lead.peers == 2 for n in nodes), 10, what="every node seeing the other two")
        assert sum(len(n.gained) for n in nodes) == 1  # nobody else ever led
        t0 = time.monotonic()
        first.lead.stop()
        assert first.lost and first.lost[-1][1] == "the node stops"
        rest = [n for n in nodes if n is not first]
        nxt = wait_for(lambda: [n for n in rest if n.lead.leading], 10, what="the next leader")
        assert len(nxt) == 1
        # released, not expired: taken at the next try, a third of the lease at most
        assert nxt[0].gained[-1][1] - t0 < LEASE / 3 + 1.0
        assert nxt[0].lead.term == 2
        with open_store(cfg.hub.store_url) as store:
            lease = store.lease()
            rows = {r.id: r for r in store.nodes()}
        assert lease is not None and lease.holder == nxt[0].name and lease.previous == first.name
        assert rows[first.name].role == "stopped"
    finally:
        for n in nodes:
            n.lead.stop()


def test_a_dead_leader_is_replaced_within_one_lease_time(cfg: HubConfig) -> None:
    a = Node(cfg, "a").start(cfg)
    wait_for(lambda: a.lead.leading, 10, what="a leads")
    b = Node(cfg, "b").start(cfg)
    try:
        wait_for(lambda: b.lead.peers == 1, 10, what="b seeing a")
        # a dies: its threads stop without releasing anything (as after SIGKILL)
        a.lead._stopping.set()
        with a.lead._cond:
            a.lead._cond.notify_all()
        with open_store(cfg.hub.store_url) as store:
            held = store.lease()
        assert held is not None and held.holder == "a"
        renewed = held.renewed_at
        wait_for(lambda: b.lead.leading, LEASE + 5, what="b taking over")
        with open_store(cfg.hub.store_url) as store:
            taken = store.lease()
        assert taken is not None and taken.holder == "b" and taken.term == held.term + 1
        assert held.expires_at <= taken.acquired_at < renewed + LEASE + 1.0
        assert taken.vacant == pytest.approx(taken.acquired_at - held.expires_at)
        assert not b.lost
    finally:
        b.lead.stop()


def test_a_leader_whose_renewal_is_stuck_in_the_store_stops_at_once(
    cfg: HubConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.leader")
    a = Node(cfg, "a").start(cfg)
    try:
        wait_for(lambda: a.lead.leading, 10, what="a leads")
        gained_at = a.gained[-1][1]
        # Another process holds the store's write lock: a's next renewal waits in the store.
        blocker = sqlite3.connect(str(tmp_path / "hub.sqlite3"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            wait_for(lambda: a.lost, LEASE + 3, what="a stopping as leader")
            term, why, at = a.lost[-1]
            assert term == 1 and why == "the lease was not renewed in time"
            assert not a.lead.leading and a.lead.term is None
            assert at - gained_at <= LEASE + 0.5  # by its own clock, never after the store's expiry
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # the store answers again, nobody took it meanwhile: a leads again (the same term)
        wait_for(lambda: a.lead.leading, LEASE + 3, what="a leading again")
        assert a.gained[-1][0] == 1
        assert "node a leads again (term 1): its renewal came late" in caplog.text
        assert "the lease (term 1) was not renewed in time" in caplog.text
    finally:
        a.lead.stop()


def test_a_second_process_with_a_running_nodes_name_is_refused(cfg: HubConfig) -> None:
    a = Node(cfg, "same").start(cfg)
    try:
        with open_store(cfg.hub.store_url) as store:
            wait_for(lambda: [r.role for r in store.nodes()] == ["leader"], 10, what="the node leading")
        twin = Leadership(cfg, "same", on_gain=lambda _l: None, on_loss=lambda _t, _w: None)
        with open_store(cfg.hub.store_url) as store, pytest.raises(NodeNameTaken, match="--node"):
            twin.claim(store)
        twin.stop()  # what the refused process does on its way out: it touches nothing
        with open_store(cfg.hub.store_url) as store:
            rows = store.nodes()
            lease = store.lease()
        assert [(r.id, r.instance, r.role) for r in rows] == [("same", a.lead.instance, "leader")]  # unchanged
        assert lease is not None and lease.holder == "same"
    finally:
        a.lead.stop()


def test_a_restarted_node_takes_back_the_lease_its_dead_predecessor_held(cfg: HubConfig) -> None:
    """The same name on the same host, the old pid gone: no waiting for the lease to expire."""
    a = Node(cfg, "a").start(cfg)
    wait_for(lambda: a.lead.leading, 10, what="a leads")
    a.lead._stopping.set()  # dies without releasing
    with a.lead._cond:
        a.lead._cond.notify_all()
    with open_store(cfg.hub.store_url) as store:
        # what the dead process left: its row with a pid that no longer runs
        dead = next(r for r in store.nodes() if r.id == "a")
        from hub.store import NodeInfo

        store.heartbeat_node(NodeInfo(id="a", host=dead.host, pid=_dead_pid(), version=dead.version,
                                      started_at=dead.started_at, role="leader", instance=dead.instance),
                             now=time.time())
    again = Node(cfg, "a")
    t0 = time.monotonic()
    again.start(cfg)
    try:
        wait_for(lambda: again.lead.leading, 10, what="the restarted node leading")
        assert again.gained[-1][1] - t0 < LEASE  # before the old lease would have expired
        assert again.lead.term == 2
    finally:
        again.lead.stop()


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                       check=True)
    return int(p.stdout)


def test_lease_seconds_out_of_range_is_a_config_error(tmp_path: Path) -> None:
    from hub.config import load
    from hub.errors import ConfigError

    p = tmp_path / "hub.toml"
    p.write_text('[hub]\ndata_dir = "d"\nsigning_key_file = "k"\nleader_lease_seconds = 0.5\n'
                 '[mqtt]\nhost = "127.0.0.1"\n[booking]\nadapter = "ics"\n')
    with pytest.raises(ConfigError, match="leader_lease_seconds"):
        load(p, check_files=False)
