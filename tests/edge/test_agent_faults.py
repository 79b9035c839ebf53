"""Faults injected into a running agent (a real subprocess, a real Mosquitto):
nothing is lost, and a cache is applied whole or not at all."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.outbox import Outbox
from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from testkit.util import wait_for
from wire import envelope
from wire.topics import Kind

from .hubside import HubSide, entry, read_cache

CARD = "em4100:0A00B1C2D3"
STRANGER = "em4100:0A00B1C2FF"


def outbox_state(site: SiteFiles) -> tuple[int, int]:
    """(last seq, pending) from the site's outbox, read beside the running agent."""
    ob = Outbox(site.data_dir / "outbox.db", site.site, "test", read_only=True)
    try:
        return ob.last_seq, ob.pending_count()
    finally:
        ob.close()


def badge_burst(site: SiteFiles, n: int) -> None:
    for i in range(n):
        site.badge("eingang-sim", CARD if i % 2 == 0 else STRANGER)


def test_no_event_is_lost_across_a_broker_outage_and_agent_kills(tmp_path: Path, broker: Mosquitto) -> None:
    key = Ed25519PrivateKey.generate()
    # A high denial burst: this test is about durability, not about the guessing limit.
    site = write_site(tmp_path / "site", "minheim", broker, key, policy={"deny_burst": 1000})
    hub = HubSide(broker, key, site.site, auto_ack=True)
    try:
        site.start()
        hub.wait_online()
        hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None)]), retain=True)
        assert hub.cache_ack().ok

        start = outbox_state(site)[0]
        badge_burst(site, 10)
        wait_for(lambda: outbox_state(site)[0] >= start + 10, 20, what="ten badges decided")

        # Broker down: the agent keeps deciding; events wait in its outbox.
        broker.stop()
        before = outbox_state(site)[0]
        badge_burst(site, 10)
        wait_for(lambda: outbox_state(site)[0] >= before + 10, 20, what="badges decided while offline")
        assert outbox_state(site)[1] >= 10
        broker.start()

        # The agent killed without warning, three times, with badges in flight.
        for _ in range(3):
            badge_burst(site, 6)
            site.kill()
            site.start()
            wait_for(lambda: hub.contiguous >= outbox_state(site)[0] > 0, 30, what="resend after restart")
        before = outbox_state(site)[0]
        badge_burst(site, 6)
        wait_for(lambda: outbox_state(site)[0] >= before + 6, 20, what="the last badges decided")

        def converged() -> bool:
            last, pending = outbox_state(site)
            return pending == 0 and hub.contiguous == last

        wait_for(converged, 30, what="every event acknowledged")
        last, _ = outbox_state(site)
        assert hub.seqs == set(range(1, last + 1))  # nothing missing, nothing extra
        assert len(hub.events) == last  # each seq stored once, whatever was resent
        granted = [e for e in hub.events if e.type == "access.granted"]
        denied = [e for e in hub.events if e.type == "access.denied"]
        # Badges written just before a kill may die unread in the reader's FIFO; those we
        # waited for (10 online, 10 offline, 6 at the end) were all decided and reported.
        assert len(granted) >= 13 and len(denied) >= 13
        assert sum(e.type == "system.started" for e in hub.events) == 4
    finally:
        site.stop()
        hub.close()


@pytest.mark.slow
def test_an_agent_killed_while_applying_a_large_cache_holds_the_old_or_the_new_one_whole(
    tmp_path: Path, broker: Mosquitto
) -> None:
    key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "site", "minheim", broker, key)
    hub = HubSide(broker, key, site.site)
    rng = random.Random(20261121)
    counts = {}

    def body(version: int) -> bytes:
        n = 20_000 + version * 7  # every version has its own size, so a mix would show
        counts[version] = n
        entries = [entry(site.cred_key, f"em4100:{i:010X}", ["eingang"], ref=f"b{version}-{i}") for i in range(n)]
        return envelope.sign(hub.body_full(entries, version=version), key)

    try:
        site.start()
        hub.wait_online()
        hub.send(Kind.CACHE, b"", raw=body(1), retain=True)
        t0 = time.monotonic()
        assert hub.cache_ack(timeout=60).ok
        apply_s = time.monotonic() - t0
        outcomes = {"old": 0, "new": 0}
        for version in range(2, 22):
            payload = body(version)
            hub.send(Kind.CACHE, b"", raw=payload, retain=True)
            time.sleep(rng.uniform(0, apply_s * 1.2))  # a random moment during the apply (fault injection)
            site.kill()
            v, n = read_cache(site)
            assert (v, n) in ((version - 1, counts[version - 1]), (version, counts[version])), (v, n)
            outcomes["old" if v == version - 1 else "new"] += 1
            site.start()  # the retained cache arrives again and is applied
            wait_for(lambda ver=version: read_cache(site)[0] == ver, 60, what=f"version {version} applied")
            assert read_cache(site) == (version, counts[version])
        print(f"SIGKILL during apply: {outcomes} (apply took {apply_s:.2f} s)")
        assert outcomes["old"] + outcomes["new"] == 20
    finally:
        site.stop()
        hub.close()
