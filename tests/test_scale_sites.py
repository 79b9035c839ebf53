"""The simulated sites of the scale benchmark (testkit.scale_sites): what one site does
with signed caches, and, at tiny scale against the real hub on a real broker, that every
site verifies and holds the latest version, follows deltas, gets its events acknowledged,
and is sent no full cache again (by the hub or, as retained, by the broker) after a broker
restart when it holds the latest."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from testkit.booking_fake import BookingPlatform
from testkit.hub_nodes import HubNodes
from testkit.scale_county import (
    expected_entries,
    latest_versions,
    make_bookings,
    make_scale_county,
    seed_members,
    store_url,
)
from testkit.scale_fleet import Fleet
from testkit.scale_report import parse_nodes, store_choice
from testkit.scale_report import rows as scale_rows
from testkit.scale_sites import SimConfig, SimSite, SiteLogin, SiteLoop
from wire import envelope
from wire import messages as m
from wire.keys import public_key_b64
from wire.topics import Kind


def _entry(i: int) -> m.Entry:
    return m.Entry(id=f"bk-{i}:{i:016x}", cred=f"{i:032x}", doors=["eingang"], from_=None, until=None,
                   who="w", ref=f"bk-{i}", room=None)


def _site(key: Ed25519PrivateKey) -> SimSite:
    loop = SiteLoop(SimConfig("127.0.0.1", 1, public_key_b64(key)), [SiteLogin("alpha")])
    return loop.sites[0]


def _full(key: Ed25519PrivateKey, version: int, ids: range, site: str = "alpha") -> bytes:
    return envelope.sign(m.CacheFull(site=site, version=version, issued_at=1, expires_at=2,
                                     entries=[_entry(i) for i in ids]), key)


def _delta(key: Ed25519PrivateKey, version: int, base: int, upsert: range, remove: list[int]) -> bytes:
    return envelope.sign(m.CacheDelta(site="alpha", version=version, base_version=base, issued_at=1, expires_at=2,
                                      upsert=[_entry(i) for i in upsert], remove=[_entry(i).id for i in remove]), key)


def test_a_simulated_site_applies_only_what_it_verified_and_asks_for_a_full_on_a_foreign_base() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    site = _site(key)
    site._cache(Kind.CACHE, _full(other, 5, range(3)))  # signed by a key the site does not trust
    site._cache(Kind.CACHE, _full(key, 5, range(3), site="beta"))  # another site's cache
    forged = m.decode(_full(key, 5, range(3)), envelope.Envelope)
    tampered = m.encode(envelope.Envelope(alg="Ed25519", kid=forged.kid, enc=forged.enc, sig=forged.sig,
                                          body=base64.b64encode(b"x" + base64.b64decode(forged.body)).decode()))
    site._cache(Kind.CACHE, tampered)
    assert site.r.version is None and site.r.verified == 1
    assert site.r.refused == {"unknown_key": 1, "wrong_site": 1, "bad_signature": 1}

    site._cache(Kind.CACHE, _full(key, 5, range(3)))
    assert (site.r.version, site.r.entries, site.r.applied_fulls) == (5, 3, 1)
    site._cache(Kind.CACHE_DELTA, _delta(key, 7, 6, range(3, 5), []))  # based on a version it never held
    assert site.r.refused["base_mismatch"] == 1 and site.r.version == 5
    site._cache(Kind.CACHE_DELTA, _delta(key, 6, 5, range(2, 5), [2, 0]))  # a removal wins over its upsert
    assert (site.r.version, site.ids) == (6, {_entry(1).id, _entry(3).id, _entry(4).id})
    site._cache(Kind.CACHE, _full(key, 6, range(9)))  # a repeated version: stale, nothing changes
    assert site.r.refused["stale_version"] == 1 and site.r.entries == 3
    assert site.r.seq == 7 and len(site.pending) == 7  # one cache event per envelope, kept until acked


def test_simulated_sites_follow_the_real_hub_and_a_broker_restart_resends_no_full(tmp_path: Path) -> None:
    with BookingPlatform(page_size=500, indexed=True) as platform:
        sc = make_scale_county(tmp_path, platform, 20)
        url = store_url(sc)
        seed_members(url, 400)
        with sc.broker, HubNodes(sc.county.hub_config_path, log_level="warning") as nodes, \
                Fleet(sc.sim_config(), sc.logins(), per_process=10) as fleet:
            # The hub's first (empty) caches, verified and applied by every site.
            first = fleet.wait(lambda reps: all(r.version is not None for r in reps), 60, what="first caches")
            assert all(r.applied_fulls == 1 and r.refused == {} for r in first)

            bookings = make_bookings(sc, 2000, 400)
            platform.load(bookings, touch=False)
            want = expected_entries(sc, bookings)
            assert sum(want.values()) == 2000
            reps = fleet.wait(lambda reps: all(r.entries == want[r.site] for r in reps), 90, what="bookings")
            latest = latest_versions(url, sc.sites)
            assert {r.site: r.version for r in reps} == latest

            # One booking cancelled at each of 5 sites: a delta, applied on its base.
            for b in bookings[:5]:
                platform.cancel(b["id"])
            want.update({s: want[s] - 1 for s in sc.sites[:5]})
            reps = fleet.wait(lambda reps: all(r.entries == want[r.site] for r in reps), 60, what="deltas")
            assert all(r.applied_deltas >= 1 for r in reps[:5])
            assert {r.site: r.version for r in reps} == latest_versions(url, sc.sites)

            # Events: stored and acknowledged by the hub, per site stream.
            fleet.badge(3)
            fleet.wait(lambda reps: all(r.seq and r.acked == r.seq for r in reps), 60, what="event acks")

            before = {r.site: r for r in fleet.snapshot()}
            latest = latest_versions(url, sc.sites)
            assert all(before[s].version == latest[s] for s in sc.sites)
            t0 = time.time()
            sc.broker.restart()
            after = fleet.wait(lambda reps: all(r.connected and r.connected_at > t0 for r in reps)
                               and nodes.all_connected(), 90, what="every site and the hub back")
            # Whatever a hub would send late has arrived once the sites' statuses were answered.
            fleet.badge(1)
            after = fleet.wait(lambda reps: all(r.acked == r.seq for r in reps), 60, what="event acks after")
            # The hub re-sent no full cache; what the broker hands a site again as retained
            # would be refused as stale. The sites' sessions were never started clean, so
            # Mosquitto restored them: nothing is handed out again.
            resent = {r.site: (r.fulls - r.fulls_retained) - (b.fulls - b.fulls_retained)
                      for r in after for b in [before[r.site]]}
            assert resent == dict.fromkeys(sc.sites, 0)
            for r in after:
                again = r.fulls_retained - before[r.site].fulls_retained
                assert r.refused == ({"stale_version": again} if again else {})
                assert r.version == latest[r.site]
            assert all(r.session_present for r in after)
            assert {r.site: r.fulls_retained - before[r.site].fulls_retained for r in after} \
                == dict.fromkeys(sc.sites, 0)


def test_the_booking_fakes_index_serves_what_a_plain_listing_serves() -> None:
    import datetime as dt
    import json
    import urllib.request

    def listing(p: BookingPlatform, since: str | None) -> list[str]:
        ids, token = [], None
        while True:
            q = "&".join(f"{k}={v}" for k, v in (("updated_since", since), ("page_token", token)) if v)
            req = urllib.request.Request(f"{p.base_url}/api/v1/bookings?{q}",
                                         headers={"Authorization": f"Bearer {p.token}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                doc = json.loads(resp.read())
            ids += [b["id"] for b in doc["items"]]
            token = doc["next_page_token"]
            if token is None:
                return ids

    t = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    rows = [{"id": f"b{i}", "resource_id": "r", "member_id": "m", "start": "2026-11-20T09:00:00Z",
             "end": "2026-11-20T10:00:00Z", "status": "confirmed",
             "updated_at": (t + dt.timedelta(seconds=i % 7)).isoformat().replace("+00:00", "Z")} for i in range(25)]
    with BookingPlatform(page_size=4, indexed=True) as fast, BookingPlatform(page_size=4) as plain:
        for p in (fast, plain):
            p.load(rows, touch=False)
        since = "2026-11-20T09:00:03Z"
        assert listing(fast, None) == listing(plain, None) and len(listing(fast, None)) == 25
        assert listing(fast, since) == listing(plain, since) and len(listing(fast, since)) == 13
        for p in (fast, plain):
            p.cancel("b1")  # changed now: the index follows
            p.load([{**rows[2], "status": "cancelled"}])
        assert listing(fast, since) == listing(plain, since)
        assert listing(fast, since)[-2:] == ["b1", "b2"]


def test_the_benchmarks_node_counts_and_store_are_read_strictly() -> None:
    assert parse_nodes("1") == [1]
    assert parse_nodes("1, 2,3") == [1, 2, 3]
    for bad, why in (("0", "'0' is not a node count"), ("1,,2", "'' is not a node count"), ("x", "'x' is not"),
                     ("9", "from 1 to 8"), ("2,2", "given twice"), ("-1", "'-1' is not")):
        with pytest.raises(ValueError, match=why):
            parse_nodes(bad)
    assert store_choice(None, 3) == store_choice("sqlite", 3) == "sqlite"
    assert store_choice("postgres", 3) == "postgres"
    assert store_choice("postgresql://u@h:5/db", 1) == "postgresql://u@h:5/db"
    with pytest.raises(ValueError, match="one node count only"):
        store_choice("postgresql://u@h:5/db", 2)
    with pytest.raises(ValueError, match="sqlite, postgres or a postgresql:// URL"):
        store_choice("mysql://x", 1)


def test_the_benchmarks_table_puts_the_rounds_side_by_side() -> None:
    def round_(n: int, hub: float, per_node: list[tuple[int, int]]) -> dict[str, Any]:
        return {"nodes": n, "leader": "n1",
                "ingest": {"bare_per_s": 4000.0, "hub_per_s": hub},
                "memory": {"hub_rss_no_sites": [a for a, _ in per_node], "hub_rss_sites": [b for _, b in per_node],
                           "per_site_bytes": sum(b - a for a, b in per_node) / 1000},
                "sync": {"seconds_to_all_applied": 10.0 * n, "seconds_paging": 1.0, "all_at_latest": True},
                "delta": {"bookings": 100, "seconds_to_all_applied": 1.5, "deltas": 100, "fulls": 0},
                "storm": {"seconds_settled": 20.0, "seconds_all_sites_connected": 9.0, "sessions_resumed": 1000,
                          "sites": 1000, "fulls_from_hub": 3, "fulls_retained_again": 0,
                          "fulls_from_hub_to_sites_at_latest": 0, "fulls_retained_again_to_sites_at_latest": 0}}

    mib = 1024 * 1024
    r = {"sites": 1000, "bookings": 5000, "store": "postgres",
         "machine": {"loadavg_start": "1 1 1", "loadavg_end": "2 2 2", "cpus": 2},
         "rounds": [round_(1, 2000.0, [(60 * mib, 61 * mib)]),
                    round_(3, 3000.0, [(60 * mib, 62 * mib), (50 * mib, 51 * mib), (50 * mib, 51 * mib)])]}
    table = {what: (value, note) for what, value, note in scale_rows(r)}
    assert table["store; hub nodes (each round: fresh broker, store, sites)"] == ("postgres", "1 node | 3 nodes")
    assert table["hub: stored durably + acked, events/s"] == ("2,000 | 3,000", "ratio to bare 0.50 | 0.75")
    assert table["5,000 bookings: first page → every site holds its latest (leader's job)"][0] == "10.0 s | 30.0 s"
    assert table["hub memory per connected site, all nodes"] == ("1.0 KiB | 4.1 KiB",
                                                                 "per node (KiB): 1.0 | 2.0/1.0/1.0")
    assert table["hub RSS per node with every site connected (MiB)"] == ("61 | 62/51/51", "leader: n1 | n1")
    assert table["  full caches received by sites: sent by the hub / retained re-sent by the broker"][0] == "3/0 | 3/0"
