"""The site's MQTT session (edge/link.py): kept across a dropped uplink, so the retained full
cache is not downloaded again on every reconnect, while whatever the hub published in the
meantime still arrives."""

from __future__ import annotations

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


def test_a_restarted_agent_starts_a_new_session_and_gets_the_retained_full_cache(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    # A site whose disk was wiped starts a new process: it must be given the full cache.
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
