"""A site whose data directory fills up (a real, small tmpfs): it says so in its log and in
its retained status (``storage_error``, a field added to Status), keeps deciding from the
cache it holds, keeps the old cache when a new one cannot be stored, loses nothing it had
committed, and clears the report once it can write again. Found by the chaos run: a
cache that could not be stored was refused ("storage") but the status said nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cache import CacheStore
from edge.outbox import Outbox
from testkit.broker import Mosquitto
from testkit.site import write_site
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind

from ._faults import fill, small_tmpfs
from .hubside import HubSide, agent_in_thread, entry, site_with_hub

CARD = "em4100:0A00B1C2D3"


@pytest.fixture
def small_data(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "minheim" / "data", "4m") as mnt:  # the site's data directory
        if isinstance(mnt, str):
            pytest.skip(mnt)
        yield mnt


def cache_of(data: Path) -> tuple[int | None, int]:
    with CacheStore(data / "cache.db", read_only=True) as c:
        meta = c.meta()
    return meta.version, meta.entry_count


def last_seq(data: Path) -> int:
    with Outbox(data / "outbox.db", "minheim", "t", read_only=True) as ob:
        return ob.last_seq


def statuses(hub: HubSide) -> list[m.Status]:
    out = []
    while not hub.inbox[Kind.STATUS].empty():
        out.append(m.decode(hub.inbox[Kind.STATUS].get_nowait(), m.Status))
    return out


def test_a_full_data_directory_is_reported_and_deciding_goes_on(tmp_path: Path, small_data: Path, broker: Mosquitto,
                                                                mock_pins: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "minheim", "minheim", broker, key)
    assert site.data_dir == small_data
    hub = HubSide(broker, key, site.site, auto_ack=True)
    try:
        with agent_in_thread(site):
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None, who="m-anna")]))
            assert hub.cache_ack().ok
            before = {e.seq for e in hub.events}
            filler = fill(small_data)

            # A new cache cannot be stored: refused as "storage", the old one stays in force.
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, "em4100:0A00B1C2D4", ["eingang"])]))
            ack = hub.cache_ack()
            assert (ack.ok, ack.error) == (False, "storage")
            assert cache_of(small_data) == (1, 1)
            wait_for(lambda: any(s.storage_error for s in statuses(hub)), 15, what="the status reporting it")
            assert "local storage failing" in caplog.text

            # Still deciding from the cache it holds: the caretaker's card opens the door.
            site.badge("eingang-sim", CARD)
            wait_for(lambda: mock_pins.pin(17).state == 1, 10, what="the door unlocked while the disk is full")

            filler.unlink()
            # Once it can write again: the decision made meanwhile is committed and sent; the
            # hub sends the cache again, it is stored, and the status clears.
            granted = hub.wait_event(lambda e: e.type == "access.granted", timeout=30)
            assert granted.who == "m-anna"  # type: ignore[attr-defined]
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, "em4100:0A00B1C2D4", ["eingang"])]))
            assert hub.cache_ack().ok
            wait_for(lambda: any(s.storage_error is None and s.state == "online" for s in statuses(hub)), 30,
                     what="the status clearing")
            # Nothing committed was lost: every seq up to the outbox's last reached the hub.
            wait_for(lambda: hub.contiguous == last_seq(small_data) and before <= hub.seqs, 30,
                     what="every event at the hub")
    finally:
        hub.close()


def test_a_cache_that_cannot_be_stored_shows_in_the_status_even_if_events_still_can(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    # The outbox may still have room in its WAL when the cache database has none (a full
    # cache needs many new pages at once), so the cache worker's "storage" refusal must
    # raise the report by itself, not wait for an event write to fail.
    with site_with_hub(tmp_path / "minheim", broker) as (site, hub), agent_in_thread(site) as agent:
        hub.wait_online()
        statuses(hub)
        agent.post(lambda: agent._cache_done(5, "storage"))  # what the worker posts when the apply failed
        st = wait_for(lambda: next((s for s in statuses(hub) if s.storage_error), None), 15,
                      what="a status naming the storage failure")
        assert "cache version 5" in (st.storage_error or "")
