"""Per-site caches: which bookings and grants become entries, how versions advance and
persist, and that a delta applied to the previous version gives exactly the new one."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import config
from hub.caches import KEEP_VERSIONS, CacheError, CacheManager, entries_for_site
from hub.config import HubConfig
from hub.store import CacheState, CredentialConflict, Store, open_store, pseudonym
from tests.hub._bookings import NOW, Bk
from tests.hub.test_hub_config import write_hub_config
from wire import envelope
from wire import messages as m
from wire.creds import cred_hash

H = 3600
GRACE = 15 * 60
CARD = "em4100:0A00B1C2D3"
FOB = "iso14443a:04A1B2C3D4E5F6"


@dataclass
class Hub:
    cfg: HubConfig
    store: Store
    caches: CacheManager
    site_key: bytes

    def reopen(self) -> Hub:
        self.store.close()
        store = open_store(self.cfg.hub.store_url)
        return Hub(self.cfg, store, CacheManager(store, self.cfg, config.signing_key(self.cfg)), self.site_key)


def make_hub(root: Path) -> Hub:
    cfg = config.load(write_hub_config(root))
    store = open_store(cfg.hub.store_url)
    return Hub(cfg, store, CacheManager(store, cfg, config.signing_key(cfg)), config.site_key(cfg, "minheim"))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = make_hub(tmp_path)
    yield h
    h.store.close()


def entries(h: Hub, now: int = NOW) -> list[m.Entry]:
    return h.caches.entries("minheim", now)


def with_member(h: Hub, member_id: str = "m1", *creds: str) -> None:
    h.store.add_member(member_id, "Anna Beispiel", "anna@example.org")
    for c in creds:
        h.store.add_credential(member_id, c)


# --- which entries ----------------------------------------------------------------------------


def test_a_confirmed_booking_yields_one_entry_per_credential(hub: Hub) -> None:
    with_member(hub, "m1", CARD, FOB)
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW + H, NOW + 3 * H)])
    got = entries(hub)
    assert len(got) == 2
    assert {e.cred for e in got} == {cred_hash(hub.site_key, CARD), cred_hash(hub.site_key, FOB)}
    for e in got:
        assert (e.from_, e.until) == (NOW + H - GRACE, NOW + 3 * H + GRACE)
        assert e.doors == ["main", "cowork"]
        assert (e.ref, e.room) == ("b1", "cowork")
        assert e.id == f"b1:{e.cred[:16]}"
        assert e.who == pseudonym(hub.store.hub_secret("who"), "m1")
        assert "Anna" not in e.who and "m1" not in e.who[2:]
    assert hub.store.member_by_who(got[0].who).id == "m1"  # type: ignore[union-attr]
    # The hashes are what the site computes from what its reader reads.
    m.decode(m.encode(got[0]), m.Entry)


def test_a_second_resource_of_a_room_opens_that_rooms_doors(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([Bk("b1", "res-meeting-half", "m1", NOW, NOW + H)])
    assert [(e.room, e.doors) for e in entries(hub)] == [("meeting", ["main", "meeting"])]


def test_cancelled_and_out_of_window_bookings_yield_nothing(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([
        Bk("cancelled", "res-cowork", "m1", NOW, NOW + H, status="cancelled"),
        Bk("long-ago", "res-cowork", "m1", NOW - 3 * 86400, NOW - 2 * 86400),
        Bk("beyond-horizon", "res-cowork", "m1", NOW + 8 * 86400, NOW + 8 * 86400 + H),
        Bk("unmapped", "res-elsewhere", "m1", NOW, NOW + H),
        Bk("yesterday", "res-cowork", "m1", NOW - 20 * H, NOW - 19 * H),
    ])
    assert [e.ref for e in entries(hub)] == ["yesterday"]


def test_a_member_without_credentials_gets_no_entries(hub: Hub) -> None:
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "stranger", NOW, NOW + H)])
    assert entries(hub) == []


def test_a_pin_yields_a_pin_entry_even_for_an_unknown_member(hub: Hub) -> None:
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "stranger", NOW, NOW + H, pin="4821")])
    (e,) = entries(hub)
    assert e.cred == cred_hash(hub.site_key, "pin:4821")
    assert (e.ref, e.room, e.from_, e.until) == ("b1", "cowork", NOW - GRACE, NOW + H + GRACE)
    assert e.who == pseudonym(hub.store.hub_secret("who"), "stranger")


def test_an_enrolled_pin_equal_to_the_bookings_pin_gives_one_entry(hub: Hub) -> None:
    with_member(hub, "m1", "pin:4821")
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW, NOW + H, pin="4821")])
    assert len(entries(hub)) == 1


def test_standing_grants_have_no_ref_and_open_their_doors(hub: Hub) -> None:
    with_member(hub, "care", CARD)
    all_doors = hub.store.add_grant("care", "minheim", label="caretaker")
    hub.store.add_grant("care", "minheim", ["main"], valid_from=NOW, valid_until=NOW + 30 * 86400)
    hub.store.add_grant("care", "minheim", ["main"], valid_until=NOW - 2 * 86400, label="expired")
    got = {e.id: e for e in entries(hub)}
    assert len(got) == 2
    e = got[f"standing:{all_doors.id}:{cred_hash(hub.site_key, CARD)[:16]}"]
    assert (e.ref, e.room, e.from_, e.until) == (None, None, None, None)
    assert e.doors == ["main", "cowork", "meeting"]
    windowed = next(x for x in got.values() if x is not e)
    assert (windowed.doors, windowed.from_, windowed.until) == (["main"], NOW, NOW + 30 * 86400)


def test_entries_for_site_is_usable_without_the_manager(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW, NOW + H)])
    got = entries_for_site(hub.store, hub.cfg.site("minheim"), NOW, grace_before=0, grace_after=60,
                           horizon_days=1, site_key=hub.site_key)
    assert [(e.from_, e.until) for e in got] == [(NOW, NOW + H + 60)]


# --- versions ---------------------------------------------------------------------------------


def test_versions_increase_persist_and_are_not_reissued_without_change(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW, NOW + H)])
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    assert hub.caches.rebuild("minheim", NOW + 60) is None
    hub.store.upsert_bookings([Bk("b2", "res-cowork", "m1", NOW + H, NOW + 2 * H)])
    v2 = hub.caches.rebuild("minheim", NOW + 60)
    assert v2 is not None and v2 > v1
    h2 = hub.reopen()
    assert h2.caches.latest_version("minheim") == v2
    assert h2.caches.rebuild("minheim", NOW + 120) is None
    assert [e.ref for e in h2.caches.full_body("minheim").entries] == ["b1", "b2"]
    h2.store.upsert_bookings([Bk("b2", "res-cowork", "m1", NOW + H, NOW + 2 * H, status="cancelled",
                                 updated_at=NOW + 1)])
    # Even with the clock set back, the version moves on.
    v3 = h2.caches.rebuild("minheim", NOW - 86400)
    assert v3 is not None and v3 > v2
    h2.store.close()


def test_an_unchanged_cache_is_renewed_after_half_its_validity(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW, NOW + 3 * 86400)])
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    assert hub.caches.rebuild("minheim", NOW + 24 * H - 1) is None
    v2 = hub.caches.rebuild("minheim", NOW + 24 * H)
    assert v2 is not None
    full = hub.caches.full_body("minheim")
    assert (full.issued_at, full.expires_at) == (NOW + 24 * H, NOW + 72 * H)
    delta = hub.caches.delta_body("minheim", v1)
    assert delta is not None
    assert (delta.upsert, delta.remove, delta.expires_at) == ([], [], NOW + 72 * H)


def test_a_site_holding_a_version_the_hub_never_issued_gets_a_higher_one(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW, NOW + H)])
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    # E.g. the hub's store came back from an older backup: the site reports more.
    v2 = hub.caches.rebuild("minheim", NOW + 1, min_version=v1 + 500)
    assert v2 is not None and v2 > v1 + 500
    assert hub.caches.rebuild("minheim", NOW + 2, min_version=v1 + 500) is None


class RacingStore:
    """A store on which another hub worker records a version just after this one has
    read the latest (a real second connection to the same file): ``store`` with its
    ``cache_snapshot`` wrapped."""

    rival: CacheManager | None = None

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def cache_snapshot(self, site_id: str) -> tuple[CacheState, dict[str, str]] | None:
        snap = self.store.cache_snapshot(site_id)
        rival, self.rival = self.rival, None
        if rival is not None:
            assert rival.rebuild(site_id, NOW + 5) is not None
        return snap


def test_a_version_recorded_by_another_worker_in_between_is_diffed_against(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings([Bk("b1", "res-cowork", "m1", NOW, NOW + H)])
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    racing = RacingStore(open_store(hub.cfg.hub.store_url))
    mine = CacheManager(racing, hub.cfg, config.signing_key(hub.cfg))
    racing.rival = hub.caches
    hub.store.upsert_bookings([Bk("b2", "res-cowork", "m1", NOW + H, NOW + 2 * H)])
    # The rival records the change first; this worker's write conflicts, it diffs again
    # against the rival's version and finds nothing left to do.
    assert mine.rebuild("minheim", NOW + 6) is None
    assert [e.ref for e in mine.full_body("minheim").entries] == ["b1", "b2"]
    assert mine.latest_version("minheim") == NOW + 5
    racing.close()


def test_full_body_before_any_build_and_unknown_sites_are_errors(hub: Hub) -> None:
    with pytest.raises(CacheError):
        hub.caches.full_body("minheim")
    with pytest.raises(CacheError):
        hub.caches.rebuild("atlantis", NOW)


# --- deltas -----------------------------------------------------------------------------------


def apply(base: dict[str, m.Entry], delta: m.CacheDelta) -> dict[str, m.Entry]:
    """What a site does with a delta."""
    out = dict(base)
    for i in delta.remove:
        assert i in out, "a delta removes only what the site holds"
        del out[i]
    for e in delta.upsert:
        out[e.id] = e
    return out


def as_dict(full: m.CacheFull) -> dict[str, m.Entry]:
    return {e.id: e for e in full.entries}


BASE_BOOKINGS = [Bk(f"b{i}", ("res-cowork", "res-meeting")[i % 2], f"m{i % 4}", NOW + i * H, NOW + (i + 2) * H)
                 for i in range(16)]
OPS = st.lists(
    st.tuples(st.sampled_from(["add", "cancel", "move", "pin", "cred_add", "cred_remove", "grant", "ungrant"]),
              st.integers(0, 15), st.integers(0, 7)),
    min_size=1, max_size=10,
)


@settings(max_examples=25, deadline=None)
@given(ops=OPS)
def test_delta_from_any_kept_version_applied_to_it_equals_the_new_full(ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        h = make_hub(Path(tmp))
        try:
            for i in range(4):
                with_member(h, f"m{i}", f"pin:{7000 + i}", f"wiegand26:{i:06X}")
            h.store.upsert_bookings(BASE_BOOKINGS)
            now = NOW
            versions = [h.caches.rebuild("minheim", now)]
            fulls = {versions[0]: as_dict(h.caches.full_body("minheim"))}
            for step, (op, a, b) in enumerate(ops, start=1):
                now += 60
                bk = BASE_BOOKINGS[a]
                if op == "add":
                    h.store.upsert_bookings([Bk(f"n{step}", "res-meeting", f"m{b % 4}", now, now + (b + 1) * H)])
                elif op == "cancel":
                    h.store.upsert_bookings([replace(bk, status="cancelled", updated_at=NOW + step)])
                elif op == "move":
                    h.store.upsert_bookings([replace(bk, start=bk.start + b * 900, end=bk.end + b * 900,
                                                     resource_id="res-meeting-half", updated_at=NOW + step)])
                elif op == "pin":
                    h.store.upsert_bookings([replace(bk, pin=f"{1000 + b}" if b else None, updated_at=NOW + step)])
                elif op == "cred_add":
                    with contextlib.suppress(CredentialConflict):
                        h.store.add_credential(f"m{a % 4}", f"pin:{5000 + b}")
                elif op == "cred_remove":
                    creds = h.store.credentials_of(f"m{a % 4}")
                    if creds:
                        h.store.remove_credential(creds[b % len(creds)].id)
                elif op == "grant":
                    h.store.add_grant(f"m{a % 4}", "minheim", None if b % 2 else ["main"])
                else:
                    for g in h.store.grants_for_site("minheim")[:1]:
                        h.store.remove_grant(g.id)
                v = h.caches.rebuild("minheim", now)
                if v is None:
                    continue
                full = h.caches.full_body("minheim")
                assert full.version == v
                fulls[v] = as_dict(full)
                for old in versions:
                    delta = h.caches.delta_body("minheim", old)
                    if delta is not None:
                        assert (delta.base_version, delta.version) == (old, v)
                        assert apply(fulls[old], delta) == fulls[v]
                assert h.caches.delta_body("minheim", versions[-1]) is not None or len(fulls[v]) < 8
                versions.append(v)
        finally:
            h.store.close()


def test_delta_for_unknown_latest_or_pruned_versions_is_none(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings(BASE_BOOKINGS)
    with_member(hub, "m0", FOB)
    v1 = hub.caches.rebuild("minheim", NOW)
    hub.store.upsert_bookings([replace(BASE_BOOKINGS[1], status="cancelled", updated_at=NOW + 1)])
    v2 = hub.caches.rebuild("minheim", NOW + 1)
    hub.store.upsert_bookings([replace(BASE_BOOKINGS[5], status="cancelled", updated_at=NOW + 1)])
    v3 = hub.caches.rebuild("minheim", NOW + 2)
    assert v1 is not None and v2 is not None and v3 is not None
    assert hub.caches.delta_body("minheim", v1) is not None
    assert hub.caches.delta_body("minheim", v3) is None  # already the latest
    assert hub.caches.delta_body("minheim", v1 + 1000) is None  # never issued
    assert hub.caches.delta_body("minheim", 0) is None  # a delta from nothing is the full
    assert hub.store.prune_cache_log("minheim", keep_last=1, hard_max=1) == 2
    assert hub.caches.delta_body("minheim", v1) is None
    assert hub.caches.delta_body("minheim", v2) is not None


def test_an_entry_added_and_removed_since_the_base_is_not_sent(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings(BASE_BOOKINGS)
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    hub.store.upsert_bookings([Bk("brief", "res-cowork", "m1", NOW, NOW + H)])
    assert hub.caches.rebuild("minheim", NOW + 1)
    hub.store.upsert_bookings([Bk("brief", "res-cowork", "m1", NOW, NOW + H, status="cancelled", updated_at=NOW + 1)])
    assert hub.caches.rebuild("minheim", NOW + 2)
    delta = hub.caches.delta_body("minheim", v1)
    assert delta is not None
    assert (delta.upsert, delta.remove) == ([], [])


def big_site(h: Hub, bookings: int) -> None:
    for i in range(bookings // 4):
        h.store.add_member(f"m{i}", f"Member {i}")
        h.store.import_credentials([(f"m{i}", f"em4100:{i:010X}"), (f"m{i}", f"iso14443a:{i:08X}")])
    h.store.upsert_bookings([
        Bk(f"booking-{i:06d}", ("res-cowork", "res-meeting")[i % 2], f"m{i % (bookings // 4)}",
           NOW + (i % 100) * H, NOW + (i % 100 + 2) * H)
        for i in range(bookings)
    ])


def test_a_delta_for_one_changed_booking_is_much_smaller_than_the_full(hub: Hub) -> None:
    big_site(hub, 500)
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    full_size = len(hub.caches.signed(hub.caches.full_body("minheim")))
    hub.store.upsert_bookings([Bk("booking-000007", "res-cowork", "m7", NOW, NOW + H, updated_at=NOW + 1)])
    v2 = hub.caches.rebuild("minheim", NOW + 1)
    assert v2 is not None
    assert len(hub.caches.full_body("minheim").entries) == 1000
    delta = hub.caches.delta_body("minheim", v1)
    assert delta is not None
    assert len(delta.upsert) == 2 and delta.remove == []
    delta_size = len(hub.caches.signed(delta))
    print(f"signed full: {full_size} bytes, signed delta: {delta_size} bytes")
    assert delta_size * 20 < full_size


def test_a_new_retained_full_is_due_after_a_quarter_changed(hub: Hub) -> None:
    big_site(hub, 200)
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    assert hub.caches.needs_new_retained_full("minheim")
    hub.caches.mark_retained_full("minheim", v1)
    assert not hub.caches.needs_new_retained_full("minheim")
    hub.store.upsert_bookings([Bk(f"booking-{i:06d}", "res-cowork", "m1", NOW, NOW + H, status="cancelled",
                                  updated_at=NOW + 1) for i in range(40)])
    assert hub.caches.rebuild("minheim", NOW + 1)
    assert not hub.caches.needs_new_retained_full("minheim")  # 80 of 400 entries: 20 %
    hub.store.upsert_bookings([Bk(f"booking-{i:06d}", "res-cowork", "m1", NOW, NOW + H, status="cancelled",
                                  updated_at=NOW + 1) for i in range(40, 60)])
    v3 = hub.caches.rebuild("minheim", NOW + 2)
    assert v3 is not None
    assert hub.caches.needs_new_retained_full("minheim")  # 120 of 400: 30 %
    hub.caches.mark_retained_full("minheim", v3)
    assert not hub.caches.needs_new_retained_full("minheim")


def test_the_log_keeps_deltas_from_the_retained_full_beyond_the_last_versions(hub: Hub) -> None:
    with_member(hub, "m1", CARD, FOB)
    hub.store.add_grant("m1", "minheim")
    v1 = hub.caches.rebuild("minheim", NOW)
    assert v1 is not None
    hub.caches.mark_retained_full("minheim", v1)
    for i in range(KEEP_VERSIONS + 5):
        # Expiry renewals: a new version each time without a change.
        assert hub.caches.rebuild("minheim", NOW + (i + 1) * 24 * H) is not None
    assert hub.caches.delta_body("minheim", v1) is not None
    latest = hub.caches.latest_version("minheim")
    assert latest is not None
    hub.caches.mark_retained_full("minheim", latest)
    assert hub.caches.delta_body("minheim", v1) is None
    assert len(hub.store.cache_log("minheim", 0)) == KEEP_VERSIONS


# --- signing ----------------------------------------------------------------------------------


def test_signed_bodies_open_with_the_hubs_public_key(hub: Hub) -> None:
    with_member(hub, "m1", CARD)
    hub.store.upsert_bookings(BASE_BOOKINGS)
    v1 = hub.caches.rebuild("minheim", NOW)
    hub.store.upsert_bookings([replace(BASE_BOOKINGS[1], status="cancelled", updated_at=NOW + 1)])
    assert hub.caches.rebuild("minheim", NOW + 1)
    keys = envelope.trusted_keys(config.signing_key(hub.cfg).public_key())
    full = hub.caches.full_body("minheim")
    assert envelope.open_body(hub.caches.signed(full), keys, "minheim") == full
    assert v1 is not None
    delta = hub.caches.delta_body("minheim", v1)
    assert delta is not None
    opened = envelope.open_body(hub.caches.signed(delta), keys, "minheim")
    assert opened == delta
    assert isinstance(opened, m.CacheDelta) and opened.remove == [f"b1:{cred_hash(hub.site_key, CARD)[:16]}"]
    assert full.expires_at - full.issued_at == 48 * H
