"""The site's MQTT session (edge/link.py): never started clean, so it is kept across a
dropped uplink, an agent restart and a broker restart (persistence kept); the retained full
cache is not downloaded again on any of them, while whatever the hub published in the
meantime still arrives. A site that holds no cache takes the retained full anew."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from testkit.broker import Mosquitto
from testkit.tcpproxy import TcpProxy
from testkit.util import wait_for
from wire.topics import Kind

from ._faults import fill, small_tmpfs
from .hubside import HubSide, agent_in_thread, entry, read_cache, site_with_hub

CARD = "em4100:0a00c0ffee"


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto, mock_pins: Any) -> Iterator[tuple[TcpProxy, HubSide, Agent, Any]]:
    with TcpProxy(broker.host, broker.port) as proxy, \
            site_with_hub(tmp_path / "minheim", broker, via=proxy) as (site, hub), agent_in_thread(site) as agent:
        hub.wait_online()
        hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)]), retain=True)
        ack = hub.cache_ack()
        assert (ack.version, ack.ok) == (1, True)
        yield proxy, hub, agent, site


def drop_uplink(proxy: TcpProxy, agent: Agent) -> None:
    proxy.cut()
    wait_for(lambda: not agent.link.connected, 20, what="the site to notice the cut")


def restore_uplink(proxy: TcpProxy, agent: Agent) -> None:
    proxy.heal()
    wait_for(lambda: agent.link.connected, 30, what="the site to reconnect")


def acks_until(hub: HubSide, version: int) -> list[tuple[int | None, bool, str | None]]:
    """Cache acks up to the one for ``version`` (QoS 1 may repeat an ack cut off in flight)."""
    acks = []
    while not acks or acks[-1][0] != version:
        a = hub.cache_ack()
        acks.append((a.version, a.ok, a.error))
    return acks


def test_a_reconnect_does_not_download_the_retained_full_cache_again(rig: Any) -> None:
    proxy, hub, agent, _ = rig
    drop_uplink(proxy, agent)
    restore_uplink(proxy, agent)
    # A clean session would have the broker resend the retained version 1 on resubscribe,
    # which the site would refuse (stale_version) before it gets to this delta.
    hub.send(Kind.CACHE_DELTA, hub.body_delta(1, 2, [], []))
    acks = acks_until(hub, 2)
    assert all(ok for _, ok, _ in acks), acks
    assert acks[-1] == (2, True, None)


def test_what_the_hub_published_while_the_site_was_away_arrives_on_reconnect(rig: Any) -> None:
    proxy, hub, agent, site = rig
    drop_uplink(proxy, agent)
    hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None),
                                        entry(site.cred_key, "em4100:0b00c0ffee", ["eingang"], ref=None)]),
             retain=True)
    hub.send(Kind.CACHE_DELTA, hub.body_delta(2, 3, [], []))
    restore_uplink(proxy, agent)
    acks = acks_until(hub, 3)
    assert all(ok for _, ok, _ in acks), acks
    assert {v for v, _, _ in acks} >= {2, 3}
    assert read_cache(site) == (3, 2)


def resumed(caplog: pytest.LogCaptureFixture) -> int:
    """How many of the link's connections so far resumed the broker's session."""
    return sum("session resumed" in r.getMessage() for r in caplog.records if r.name == "edge.link")


def back_online(hub: HubSide, since: float, timeout: float = 30.0) -> None:
    """Until the site's online status published after ``since`` (not the retained one the
    hub side may be handed again after a broker restart)."""
    deadline = time.monotonic() + timeout
    while hub.wait_online(max(0.1, deadline - time.monotonic())).ts <= since:
        pass


def saved_since(broker: Mosquitto, since: float) -> None:
    """Until Mosquitto wrote its persistence file after ``since`` (autosave every second):
    what a SIGKILL must not lose."""
    db = broker.workdir / "data" / "mosquitto.db"
    wait_for(lambda: db.exists() and db.stat().st_mtime > since + 0.1, 15, what="a persistence save")


@pytest.mark.parametrize("hard", [False, True], ids=["clean-stop", "sigkill"])
def test_after_a_broker_restart_a_site_at_the_latest_version_gets_no_full_again_and_follows_the_next(
    rig: Any, broker: Mosquitto, hard: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.link")
    _, hub, _, site = rig
    if hard:
        saved_since(broker, time.time())
    before = resumed(caplog)
    t0 = time.time()
    broker.restart(hard=hard)
    back_online(hub, t0)
    assert resumed(caplog) == before + 1  # Mosquitto restored the session (it was not started clean)
    # A lost session would have the site subscribe anew and the broker hand it the retained
    # version 1 again, refused stale_version before this delta's ack.
    hub.send(Kind.CACHE_DELTA, hub.body_delta(1, 2, [entry(site.cred_key, "em4100:0b00c0ffee", ["eingang"],
                                                           ref=None)], []))
    acks = acks_until(hub, 2)
    assert all(ok for _, ok, _ in acks), acks
    assert read_cache(site) == (2, 2)


def test_a_restarted_agent_resumes_its_session_gets_what_was_published_meanwhile_and_the_retained_full_once(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.link")
    with site_with_hub(tmp_path / "minheim", broker) as (site, hub):
        with agent_in_thread(site) as first:
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)]), retain=True)
            assert hub.cache_ack().ok
        # While the agent is down the hub publishes version 2: it waits in the session.
        hub.send(Kind.CACHE_DELTA, hub.body_delta(1, 2, [entry(site.cred_key, "em4100:0b00c0ffee", ["eingang"],
                                                               ref=None)], []))
        before = resumed(caplog)
        with agent_in_thread(site):
            hub.wait_online(not_boot=first.boot)
            # The first connect of a process takes the cache subscription anew (a message the
            # last process took but never applied is not waited for): the retained version 1
            # comes once more and is refused as stale; the delta from the session applies.
            seen: list[tuple[int | None, bool, str | None]] = []
            while not (any(v == 2 and ok for v, ok, _ in seen) and any(e == "stale_version" for *_, e in seen)):
                a = hub.cache_ack()
                seen.append((a.version, a.ok, a.error))
            assert resumed(caplog) == before + 1
        assert all(ok or e == "stale_version" for _, ok, e in seen), seen
        assert read_cache(site) == (2, 2)


def test_a_reimaged_site_that_finds_its_old_session_with_queued_messages_gets_the_retained_full_and_converges(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A Pi re-imaged while the broker kept its session: the session queued a delta (and an
    # event ack of the old install's stream); the new install holds no cache.
    caplog.set_level(logging.INFO, logger="edge.link")
    with site_with_hub(tmp_path / "minheim", broker) as (site, hub):
        with agent_in_thread(site) as first:
            old = hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)]), retain=True)
            assert hub.cache_ack().ok
        hub.send(Kind.CACHE_DELTA, hub.body_delta(1, 2, [entry(site.cred_key, "em4100:0b00c0ffee", ["eingang"],
                                                               ref=None)], []))
        hub.client.publish(f"torwart/v1/site/{site.site}/event/ack", b'{"stream": "%s", "upto": 99}'
                           % old.stream.encode())
        for path in site.data_dir.glob("*.db*"):  # cache, outbox, state: a new install
            path.unlink()
        before = resumed(caplog)
        with agent_in_thread(site):
            st = hub.wait_online(not_boot=first.boot)
            assert st.stream != old.stream  # a new install: a new outbox stream
            # Two envelopes arrive: the queued delta (applied only on version 1, else
            # base_mismatch, which the hub answers with a full) and the retained full.
            acks = [(a.version, a.ok, a.error) for a in (hub.cache_ack(), hub.cache_ack())]
            assert (1, True, None) in acks, acks
            assert next(a for a in acks if a[0] == 2) in ((2, True, None), (2, False, "base_mismatch")), acks
            assert resumed(caplog) == before + 1
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)], version=3),
                     retain=True)
            assert acks_until(hub, 3)[-1] == (3, True, None)
            # The old stream's ack (delivered at connect) acknowledged none of the new
            # install's events: the status after version 3 still counts them pending.
            while (now := hub.wait_online()).cache_version != 3:
                pass
            assert now.stream == st.stream and now.outbox_pending > 0
        assert read_cache(site) == (3, 1)


def test_a_wiped_site_that_finds_its_old_session_still_gets_the_retained_full_cache(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    # A site whose disk was wiped starts a new process: it must be given the full cache
    # (its old session is resumed, so the site subscribes to the cache topic anew).
    with site_with_hub(tmp_path / "minheim", broker) as (site, hub):
        with agent_in_thread(site) as first:
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)]), retain=True)
            assert hub.cache_ack().ok
        (site.data_dir / "cache.db").unlink()
        for extra in ("cache.db-wal", "cache.db-shm"):
            (site.data_dir / extra).unlink(missing_ok=True)
        with agent_in_thread(site):
            hub.wait_online(not_boot=first.boot)
            assert acks_until(hub, 1)[-1] == (1, True, None)
        assert read_cache(site) == (1, 1)


def test_a_site_without_a_cache_takes_the_retained_one_again_when_its_session_resumes(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    # The site could not store the retained full cache (disk full), so it holds none; a
    # resumed session would never resend it. On reconnect the site subscribes to it anew.
    with TcpProxy(broker.host, broker.port) as proxy, \
            small_tmpfs(tmp_path / "minheim" / "data", "4m") as data:
        if isinstance(data, str):
            pytest.skip(data)
        with site_with_hub(tmp_path / "minheim", broker, via=proxy) as (site, hub):
            with agent_in_thread(site) as agent:
                hub.wait_online()
                filler = fill(data)
                hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)]), retain=True)
                assert acks_until(hub, 1)[-1] == (1, False, "storage")
                filler.unlink()
                drop_uplink(proxy, agent)
                restore_uplink(proxy, agent)
                ack = hub.cache_ack()
                while (ack.version, ack.ok) == (1, False):  # a repeat of the "storage" ack (QoS 1, cut in flight)
                    ack = hub.cache_ack()
                assert (ack.version, ack.ok, ack.error) == (1, True, None)
            assert read_cache(site) == (1, 1)
