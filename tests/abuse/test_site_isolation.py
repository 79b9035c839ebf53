"""A compromised site (one hall's broker login, only the topics its ACL allows) against the
real hub service: huge numbers, huge payloads and malformed enrollment reads are refused or
contained, counted for that site, and never stop the hub's work for another site (its
events stored and acknowledged, its cache following its bookings)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from hub import config
from hub.__main__ import main
from hub.limits import EVENT_MAX_BYTES
from hub.publisher import VERSION_AHEAD
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county
from testkit.util import wait_for
from wire import messages as m
from wire.keys import read_key_file
from wire.seal import seal
from wire.topics import Kind

from ._hubrig import CARD, MEMBER, A, B, Rig, event, make_rig


def status(version: int | None) -> bytes:
    return m.encode({"state": "online", "ts": 1_800_000_000.0, "boot": "a", "software": "x",
                     "cache_version": version, "cache_expires_at": None, "clock_synced": True,
                     "outbox_pending": 0, "lockdown": False})


def cache_ack(version: int) -> bytes:
    return m.encode({"version": version, "ok": True, "error": None, "ts": 1_800_000_000.0})


def sites_cli(rig: Rig, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["sites", "--config", str(rig.county.hub_config_path)]) == 0
    return capsys.readouterr().out


def store_bytes(rig: Rig) -> int:
    p = rig.store_path
    return sum(x.stat().st_size for x in (p, p.with_name(p.name + "-wal")) if x.exists())


# --- item 8: integers ----------------------------------------------------------------------------


def test_a_site_acking_cache_version_2_63_does_not_hold_back_a_cancellation_at_another_site(rig: Rig) -> None:
    cancelled = rig.book(B)
    for _ in range(10):  # enough entries that one more is sent as a delta, not a new full
        rig.book(A)
    rig.sync()
    held = rig.b_holds_latest()
    rig.publish(A, Kind.STATUS, status(None))
    rig.publish(A, Kind.CACHE_ACK, cache_ack(2**63 - 1))  # a version SQLite can store, but not one above it
    rig.a_barrier()

    # One sync changes both sites: a new booking at site a (first in the rebuild loop),
    # a cancellation at site b.
    rig.platform.cancel(cancelled)
    rig.book(A)
    rig.sync()
    body = rig.wait_b_cache(above=held)
    if isinstance(body, m.CacheDelta):
        assert body.remove and all(i.startswith(f"{cancelled}:") for i in body.remove)
    else:
        assert all(e.ref != cancelled for e in body.entries)
    latest_a = rig.svc.call(lambda: rig.svc.hub.caches.latest_version(A))
    assert latest_a is not None and latest_a <= time.time() + VERSION_AHEAD
    rig.alive()


def test_a_version_the_hub_never_issued_cannot_push_its_counter_and_is_counted(rig: Rig) -> None:
    rig.book(A)
    rig.sync()
    latest = rig.svc.call(lambda: rig.svc.hub.caches.latest_version(A))
    assert latest is not None
    rig.publish(A, Kind.STATUS, status(2**53))  # valid on the wire, far above anything issued
    rig.publish(A, Kind.CACHE_ACK, cache_ack(2**53))
    rig.a_barrier()
    assert rig.svc.call(lambda: rig.svc.hub.caches.latest_version(A)) == latest
    wait_for(lambda: rig.refusals(A).get("status:unissued_version") == 1
             and rig.refusals(A).get("cache/ack:unissued_version") == 1, 20, what="the refusals counted for site a")

    # A version a little above the latest is what a site holds after the hub's store was
    # restored from a backup: it still gets a new version above it.
    rig.publish(A, Kind.STATUS, status(latest + 50))
    wait_for(lambda: (rig.svc.call(lambda: rig.svc.hub.caches.latest_version(A)) or 0) > latest + 50, 20,
             what="a version above the one site a holds")
    assert rig.refusals(B) == {}
    rig.alive()


@pytest.mark.parametrize("seq", [2**63, 2**64], ids=["2^63", "2^64"])
def test_an_event_with_a_huge_seq_does_not_drop_other_sites_events_in_the_same_batch(rig: Rig, seq: int) -> None:
    with rig.main_loop_held():  # everything below meets in one event drain
        rig.publish(A, Kind.EVENT, event(A, 1))
        rig.publish(A, Kind.EVENT, event(A, seq))
        wait_for(lambda: len(rig.queued_events(A)) == 2, 20, what="site a's events queued")
        for s in (1, 2, 3):
            rig.publish(B, Kind.EVENT, event(B, s))
        wait_for(lambda: len(rig.queued_events(B)) == 3, 20, what="site b's events queued after them")
    rig.wait_b_acked(3)
    assert rig.sql("SELECT seq FROM events WHERE site_id = ? ORDER BY seq", A) == [(1,)]
    rig.a_seq = 1
    rig.a_barrier()  # site a's valid events still get in
    rig.alive()


def test_a_malformed_sealed_enroll_read_refuses_that_enrollment_and_other_sites_carry_on(rig: Rig) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    now = int(time.time())
    svc = rig.svc
    svc.call(lambda: svc.store.add_enrollment("enr-1", A, MEMBER, "eingang-sim", created_at=now,
                                              expires_at=now + 120, seconds=60))
    pub = X25519PrivateKey.from_private_bytes(read_key_file(rig.county.dir / "hub" / "enroll.key")).public_key()
    # Sealed correctly (site a has the hub's public enrollment key), but not a credential.
    read = m.EnrollRead(id="r-1", site=A, seq=1, boot="b", ts=float(now), clock_synced=True,
                        reader="eingang-sim", command="enr-1", sealed=seal("em4100:NOT-HEX-AT-ALL", pub, A))
    with rig.main_loop_held():
        rig.publish(A, Kind.EVENT, m.encode(read))
        wait_for(lambda: len(rig.queued_events(A)) == 1, 20, what="site a's enroll.read queued")
        for s in (1, 2, 3):
            rig.publish(B, Kind.EVENT, event(B, s))
        wait_for(lambda: len(rig.queued_events(B)) == 3, 20, what="site b's events queued after it")
    rig.wait_b_acked(3)
    enrollment = svc.call(lambda: svc.store.get_enrollment("enr-1"))
    assert enrollment is not None and enrollment.status == "refused"
    assert enrollment.credential_id is None and enrollment.detail
    assert [c.credential for c in svc.call(lambda: svc.store.credentials_of(MEMBER))] == [CARD]
    rig.alive()


# --- item 9: payload sizes -----------------------------------------------------------------------


def test_a_20_mb_event_is_refused_before_the_main_loop_counted_for_its_site_and_stores_nothing(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.b_events_acked(1)
    size0, a0 = store_bytes(rig), rig.sql("SELECT COUNT(*) FROM events WHERE site_id = ?", A)
    huge = event(A, 1, padding="x" * (20 * 1024 * 1024))
    with rig.main_loop_held():
        rig.publish(A, Kind.EVENT, huge)
        rig.publish(B, Kind.EVENT, event(B, 2))
        wait_for(lambda: rig.queued_events(B), 20, what="site b's event queued after site a's")
        # Site a's event came first and was never handed to the main loop.
        assert all(len(p) <= EVENT_MAX_BYTES for p in rig.queued_events(A))
    rig.b_seq = 2
    rig.wait_b_acked(2)
    rig.b_events_acked(3)  # and site b carries on
    wait_for(lambda: rig.refusals(A).get("event:too_large") == 1, 20, what="the refusal counted for site a")
    assert rig.sql("SELECT COUNT(*) FROM events WHERE site_id = ?", A) == a0
    assert store_bytes(rig) - size0 < 1024 * 1024
    out = sites_cli(rig, capsys)
    assert "event:too_large" in out and f"{len(huge)} bytes, limit {EVENT_MAX_BYTES}" in out
    assert [line for line in out.splitlines() if line.startswith(B) and "event:too_large" in line] == []
    rig.alive()


def test_a_4_mb_occupancy_list_is_refused_counted_for_its_site_and_shown_by_the_sites_command(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    who = [f"m-{i:016x}" for i in range(200_000)]
    big = m.encode({"ts": 1_800_000_000.0, "rooms": {"coworking": {"present": len(who), "capacity": 8, "who": who}}})
    assert len(big) > 4 * 1024 * 1024
    rig.publish(A, Kind.OCCUPANCY, big)
    rig.b_events_acked(3)
    rig.a_barrier()
    assert rig.sql("SELECT COUNT(*) FROM occupancy WHERE site_id = ?", A) == [(0,)]
    wait_for(lambda: rig.refusals(A).get("occupancy:too_large") == 1, 20, what="the refusal counted for site a")
    out = sites_cli(rig, capsys)
    row = next(line for line in out.splitlines() if line.startswith(A) and "occupancy:too_large" in line)
    assert " 1 " in row
    rig.alive()


@pytest.mark.parametrize(("rooms", "refusal"), [
    ({"coworking": 29}, "occupancy:too_many_present"),  # capacity 8: at most 8 + 20 listed
    ({"ballroom": 1}, "occupancy:unknown_room"),
])
def test_an_occupancy_list_beyond_the_rooms_capacity_or_for_an_unknown_room_is_refused(
    rig: Rig, rooms: dict[str, int], refusal: str
) -> None:
    def occupancy(listed: dict[str, int], ts: float) -> bytes:
        return m.encode({"ts": ts, "rooms": {r: {"present": n, "capacity": 8, "who": [f"m-{i:016x}" for i in range(n)]}
                                             for r, n in listed.items()}})

    rig.publish(A, Kind.OCCUPANCY, occupancy(rooms, 1_800_000_000.0))
    rig.a_barrier()
    assert rig.sql("SELECT COUNT(*) FROM occupancy WHERE site_id = ?", A) == [(0,)]
    wait_for(lambda: rig.refusals(A).get(refusal) == 1, 20, what="the refusal counted for site a")
    rig.publish(A, Kind.OCCUPANCY, occupancy({"coworking": 28}, 1_800_000_001.0))  # a full room, overfull
    rig.a_barrier()
    assert rig.sql("SELECT ts FROM occupancy WHERE site_id = ?", A) == [(1_800_000_001.0,)]
    rig.alive()


def test_a_site_whose_cache_cannot_be_built_does_not_stop_the_hub_or_the_other_sites_caches(
    tmp_path: Path, auth_broker: Mosquitto, booking_platform: BookingPlatform, site_passwords: dict[str, str]
) -> None:
    county = make_county(tmp_path, auth_broker, booking_platform, (A, B), mqtt_users=site_passwords)
    cfg = config.load(county.hub_config_path)
    (county.dir / "hub" / f"{A}.cred.key").write_text("not a key\n")  # site a's caches cannot be built
    with contextlib.ExitStack() as stack:
        rig = make_rig(county, booking_platform, site_passwords, auth_broker, stack, cfg)
        assert rig.svc.call(lambda: rig.svc.hub.caches.latest_version(A)) is None
        held = rig.svc.call(lambda: rig.svc.hub.caches.latest_version(B))
        assert held is not None
        rig.book(A)  # one sync changes both sites; site a comes first in the rebuild loop
        booked = rig.book(B)
        rig.sync()
        body = rig.wait_b_cache(above=held)
        assert isinstance(body, m.CacheFull) and [e.ref for e in body.entries] == [booked]
        rig.b_events_acked(2)
        rig.alive()
