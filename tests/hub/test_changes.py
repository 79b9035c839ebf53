"""The change feed between hub nodes (hub/changes.py) over a real SQLite store: a notice of
one node reaches another node's live streams within about one poll, is not echoed back, is
not written while a node runs alone, and what every node hears itself is not passed on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.changes import POLL_SECONDS, ChangeFeed
from hub.live import Live
from hub.store import Store, open_store
from testkit.util import wait_for
from tests.hub.test_leader import config


class Loop:
    """The store owner's loop, run inline: ``post`` queues, ``run`` empties the queue."""

    def __init__(self) -> None:
        self.work: list[Callable[[], object]] = []

    def post(self, w: Callable[[], object]) -> None:
        self.work.append(w)

    def run(self) -> None:
        while self.work:
            self.work.pop(0)()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store, str]]:
    cfg = config(tmp_path)
    a, b = open_store(cfg.hub.store_url), open_store(cfg.hub.store_url)
    yield a, b, cfg.hub.store_url
    a.close()
    b.close()


def feed(tmp_path: Path, name: str, store: Store, live: Live, loop: Loop, peers: list[bool]) -> ChangeFeed:
    return ChangeFeed(config(tmp_path), name, store, live, peers=lambda: peers[0], post=loop.post)


def test_a_notice_of_one_node_reaches_a_stream_on_another_within_a_poll(
    tmp_path: Path, stores: tuple[Store, Store, str]
) -> None:
    sa, sb, _ = stores
    live_a, live_b = Live(), Live()
    loop_a = Loop()
    peers = [True]
    fa = feed(tmp_path, "a", sa, live_a, loop_a, peers)
    fb = feed(tmp_path, "b", sb, live_b, Loop(), peers)
    live_a.relay, live_b.relay = fa.note, fb.note
    fa.start(sa.last_change())
    fb.start(sb.last_change())

    async def scenario() -> tuple[set[str], float]:
        sub = live_b.subscribe(["minheim", "altdorf"])
        for _ in range(50):  # a burst: coalesced into one row per (site, kind)
            live_a.notify("minheim", "events")
        live_a.notify("minheim", "cache")
        t0 = time.monotonic()
        loop_a.run()  # a's main loop writes the round's notices
        got: set[str] = set()
        while not got and time.monotonic() - t0 < 5:
            got = await sub.changed(5)
        took = time.monotonic() - t0
        sub.close()
        return got, took

    try:
        got, took = asyncio.run(scenario())
        assert got == {"minheim"}
        assert took < POLL_SECONDS + 1.0
        assert fa.stats.written == 2  # (minheim, cache), (minheim, events)
        wait_for(lambda: fb.stats.relayed == 2, 5, what="both notices relayed")
        assert 0 <= fb.stats.last_delay < POLL_SECONDS + 1.0
        # b relayed them into its own streams but never back into the feed
        assert fb.stats.written == 0 and [c.node for c in sa.changes_since(0)] == ["a", "a"]
        # and a does not hear its own notices back
        time.sleep(2 * POLL_SECONDS)
        assert fa.stats.relayed == 0
    finally:
        fa.stop()
        fb.stop()


def test_a_node_alone_writes_nothing_and_what_every_node_hears_is_not_passed_on(
    tmp_path: Path, stores: tuple[Store, Store, str]
) -> None:
    sa, _, _ = stores
    live, loop, peers = Live(), Loop(), [False]
    fa = feed(tmp_path, "a", sa, live, loop, peers)
    live.relay = fa.note
    live.notify("minheim", "events")
    loop.run()
    assert sa.last_change() == 0 and fa.stats.written == 0
    peers[0] = True
    for what in ("status", "door", "occupancy"):
        live.notify("minheim", what)
    loop.run()
    assert sa.last_change() == 0
    live.notify("minheim", "events")
    loop.run()
    assert [(c.site_id, c.what) for c in sa.changes_since(0)] == [("minheim", "events")]
