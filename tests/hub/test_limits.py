"""The hub's per-message limits on what sites send (hub.limits) leave room for the largest
legitimate message of each kind, and refusals are counted per site in the store."""

from __future__ import annotations

from pathlib import Path

from hub import config
from hub.limits import EVENT_MAX_BYTES, NO_CAPACITY_WHO, SMALL_MAX_BYTES, SiteLimits, who_limit
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county
from tests.hub.store_contract import store_url_fixture  # noqa: F401
from wire import messages as m
from wire.topics import Kind

#: The longest text a field may hold, in the characters JSON spells longest (\u0001: 6 bytes).
WORST = "\x01" * 256


def _limits(tmp_path: Path, broker: Mosquitto, platform: BookingPlatform) -> tuple[SiteLimits, config.HubConfig]:
    county = make_county(tmp_path, broker, platform, ("minheim",))
    cfg = config.load(county.hub_config_path)
    return SiteLimits(cfg), cfg


def test_the_largest_legitimate_message_of_each_kind_is_well_within_its_limit(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform
) -> None:
    limits, cfg = _limits(tmp_path, broker, booking_platform)
    read = m.EnrollRead(id=WORST, site="s" * 64, seq=2**53, boot=WORST, ts=float(m.MAX_TIME), clock_synced=True,
                        reader="r" * 64, command=WORST, sealed="A" * 4096)
    granted = m.AccessGranted(id=WORST, site="s" * 64, seq=2**53, boot=WORST, ts=float(m.MAX_TIME),
                              clock_synced=True, door="d" * 64, cred="0" * 32, who=WORST, ref=WORST,
                              reason="exit_button", cache_version=2**53)
    status = m.Status(state="online", ts=float(m.MAX_TIME), boot=WORST, software=WORST, cache_version=2**53,
                      cache_expires_at=m.MAX_TIME, outbox_pending=2**31 - 1, storage_error="\x01" * 512)
    door = m.DoorState(door="d" * 64, locked=True, open=True, alarm="forced_open", mode="office_hours",
                       ts=float(m.MAX_TIME))
    acks = [m.CacheAck(version=2**53, ok=False, error=WORST, ts=float(m.MAX_TIME)),
            m.CommandAck(id=WORST, ok=False, error=WORST, ts=float(m.MAX_TIME))]
    for ev in (read, granted):
        assert 2 * len(m.encode(ev)) <= EVENT_MAX_BYTES, ev.type
        assert limits.too_large("minheim", Kind.EVENT, len(m.encode(ev))) is None
    for msg, kind in [(status, Kind.STATUS), (door, Kind.DOOR), (acks[0], Kind.CACHE_ACK),
                      (acks[1], Kind.COMMAND_ACK)]:
        assert 2 * len(m.encode(msg)) <= SMALL_MAX_BYTES, kind
    # Every room full to its limit, each person under a 256-character reference.
    site = cfg.site("minheim")
    full = m.Occupancy(ts=float(m.MAX_TIME), rooms={
        r.id: m.RoomOccupancy(present=2**31 - 1, capacity=2**31 - 1,
                              who=[f"{i:0256d}" for i in range(who_limit(r.capacity))]) for r in site.rooms})
    size = len(m.encode(full))
    assert limits.too_large("minheim", Kind.OCCUPANCY, size) is None
    assert limits.occupancy_refusal("minheim", full) is None
    assert limits.too_large("minheim", Kind.OCCUPANCY, 4 * 1024 * 1024) is not None


def test_an_occupancy_list_may_exceed_the_capacity_by_a_margin_only() -> None:
    assert who_limit(8) == 28 and who_limit(100) == 200 and who_limit(0) == 20
    assert who_limit(None) == NO_CAPACITY_WHO and who_limit(10**9) == 5000


def test_refusals_are_counted_per_site_and_kind_with_the_last_reason(store_url: str) -> None:
    with open_store(store_url) as store:
        store.record_refusals([("a", "event:too_large", 2, "70000 bytes"), ("b", "status:too_large", 0, "x")], at=1.0)
        store.record_refusals([("a", "event:too_large", 1, "90000 bytes" + "!" * 1000)], at=2.0)
        (r,) = store.site_refusals()
        assert (r.site_id, r.kind, r.count, r.last_at) == ("a", "event:too_large", 3, 2.0)
        assert r.last_reason.startswith("90000 bytes") and len(r.last_reason) == 300
        assert store.site_refusals("b") == []
