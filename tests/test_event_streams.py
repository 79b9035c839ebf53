"""A reinstalled Pi (its data directory wiped, the same site id) starts a new event stream at
seq 1: the real agent in a subprocess, Mosquitto, the real hub service; every event of the
new stream is stored, the old ones stay, and ``torwart-hub sites`` shows the reset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.outbox import Outbox
from hub.__main__ import main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.site import SiteFiles
from testkit.util import wait_for

SITE = "minheim"
CARD = "em4100:0A00B1C2D3"


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, hub_store: str) -> County:
    return make_county(tmp_path, broker, booking_platform, (SITE,), store=hub_store)


def outbox(site: SiteFiles) -> tuple[str, int, int]:
    """(stream, last seq, acked_upto) of the site's outbox, read beside the agent."""
    path = site.data_dir / "outbox.db"
    if not path.exists():
        return "", 0, 0
    with Outbox(path, SITE, "test", read_only=True) as ob:
        return ob.stream_info[0], ob.last_seq, ob.acked_upto


def run_and_badge(site: SiteFiles, badges: int) -> tuple[str, int, int]:
    """Start the agent, present a card ``badges`` times, wait until the hub acknowledged
    every event so far, stop it; return (stream, seq acknowledged, last seq) of its outbox
    (the agent's last event, ``system.stopping``, may not be acknowledged)."""
    site.start()
    try:
        wait_for(lambda: outbox(site)[1] > 0, 30, what="the agent's first events")
        for _ in range(badges):
            before = outbox(site)[1]
            site.badge("eingang-sim", CARD)
            wait_for(lambda b=before: outbox(site)[1] > b, 10, what="the badge's event committed")
        wait_for(lambda: (o := outbox(site))[1] == o[2] and o[1] >= badges, 30,
                 what="every event acknowledged by the hub")
    finally:
        site.stop()
    stream, last, acked = outbox(site)
    return stream, acked, last


def test_a_reinstalled_sites_new_stream_is_stored_in_full_and_shown_as_a_reset(
    county: County, capsys: pytest.CaptureFixture[str]
) -> None:
    site = county.sites[SITE]
    with HubThread(county) as hub:
        store_url = hub.service.cfg.hub.store_url
        store = open_store(store_url)
        try:
            first, first_acked, _ = run_and_badge(site, badges=4)
            shutil.rmtree(site.data_dir)  # reinstalled: a new outbox, the same site id
            second, second_acked, second_last = run_and_badge(site, badges=2)
            assert first != second and len(second) == 32 and second_acked >= 3

            by_stream: dict[str, list[int]] = {}
            for e in store.events(site_id=SITE, limit=10_000):
                by_stream.setdefault(e.stream, []).append(e.seq)
            # Every event of the new stream, from seq 1, is at the hub; none was taken for a
            # duplicate of the old stream's seqs (only the last, system.stopping, may be on its way).
            new = sorted(by_stream[second])
            assert new == list(range(1, len(new) + 1)) and second_acked <= len(new) <= second_last
            assert set(range(1, first_acked + 1)) <= set(by_stream[first])
            denied = [e for e in store.events(site_id=SITE, type="access.denied", limit=100) if e.stream == second]
            assert len(denied) == 2
            state = store.site_state(SITE)
            assert state is not None and (state.stream, state.acked_upto, state.gaps) == (second, len(new), ())
            assert state.status is not None and json.loads(state.status)["stream"] == second  # Status carries it
        finally:
            store.close()

    capsys.readouterr()
    assert main(["sites", "--config", str(county.hub_config_path)]) == 0
    out = capsys.readouterr().out
    with open_store(store_url) as store:
        old = {s.stream: s for s in store.event_streams(SITE)}[first]
    assert f"{SITE}: site was reset at " in out
    assert f"(new stream {second[:8]}…); previous stream {first[:8]}… acked up to {old.acked_upto}" in out
