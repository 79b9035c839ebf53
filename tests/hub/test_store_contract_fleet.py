"""The store contract for a site's life (run against every implementation): join codes used
once, withdrawn by a newer code, locked after too many wrong tries; certificates recorded,
revoked and listed for the CRL; a site's state."""

from __future__ import annotations

import threading

from hub.store import Store, open_store
from hub.store.fleet import JoinCode, SiteCert
from tests.hub._bookings import NOW
from tests.hub.store_contract import events, store_fixture, store_url_fixture  # noqa: F401


def code(id_: str = "AB12", site: str = "minheim", expires: float = NOW + 3600) -> JoinCode:
    return JoinCode(id=id_, site_id=site, secret_hash="ab" * 32, created_at=NOW, expires_at=expires,
                    broker_host="mqtt.example", broker_port=8883, tls=True)


def test_a_join_code_is_used_once_and_never_after_it_expired(store: Store) -> None:
    store.add_join_code(code())
    got = store.join_code("AB12")
    assert got is not None and got.state == "open" and got.tls and got.broker_port == 8883 and got.attempts == 0
    assert store.use_join_code("AB12", now=NOW + 10)
    assert not store.use_join_code("AB12", now=NOW + 11)
    used = store.join_code("AB12")
    assert used is not None and used.state == "used" and used.used_at == NOW + 10
    store.add_join_code(code("CD34", expires=NOW + 5))
    assert not store.use_join_code("CD34", now=NOW + 5)
    assert store.join_code("CD34").state == "open"  # type: ignore[union-attr]
    assert store.join_code("ZZZZ") is None and not store.use_join_code("ZZZZ", now=NOW)


def test_a_new_code_withdraws_the_sites_open_code_and_wrong_tries_lock_it(store: Store) -> None:
    store.add_join_code(code("AB12"))
    store.add_join_code(code("CD34"))
    store.add_join_code(code("EF56", site="altdorf"))
    assert store.join_code("AB12").state == "withdrawn"  # type: ignore[union-attr]
    assert not store.use_join_code("AB12", now=NOW)
    assert [store.join_code_failed("CD34", max_attempts=3) for _ in range(4)] == [1, 2, 3, 0]
    locked = store.join_code("CD34")
    assert locked is not None and locked.state == "locked" and locked.attempts == 3
    assert not store.use_join_code("CD34", now=NOW)
    assert store.join_code("EF56").state == "open"  # type: ignore[union-attr]
    assert store.withdraw_join_codes("altdorf") == 1 and store.withdraw_join_codes("altdorf") == 0


def test_concurrent_joins_with_one_code_let_exactly_one_through(store_url: str) -> None:
    with open_store(store_url) as s:
        s.add_join_code(code())
    wins: list[bool] = []

    def join() -> None:
        with open_store(store_url) as s:
            wins.append(s.use_join_code("AB12", now=NOW))

    threads = [threading.Thread(target=join) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_certificates_are_recorded_revoked_and_listed_for_the_crl(store: Store) -> None:
    store.add_site_cert(SiteCert(serial="1001", site_id="minheim", issued_at=NOW, not_after=NOW + 100, how="join"))
    store.add_site_cert(SiteCert(serial="1002", site_id="minheim", issued_at=NOW + 1, not_after=NOW + 200,
                                 how="renew"))
    store.add_site_cert(SiteCert(serial="2001", site_id="altdorf", issued_at=NOW, not_after=NOW + 100, how="join"))
    assert [c.serial for c in store.site_certs("minheim")] == ["1001", "1002"]
    assert [c.site_id for c in store.site_certs()] == ["altdorf", "minheim", "minheim"]
    assert store.revoked_certs(valid_at=NOW) == []
    assert store.revoke_site_certs("minheim", at=NOW + 5, keep="1002") == 1  # a second join keeps its own
    assert [c.serial for c in store.site_certs("minheim") if c.revoked_at is None] == ["1002"]
    assert store.revoke_site_certs("minheim", at=NOW + 5) == 1
    assert store.revoke_site_certs("minheim", at=NOW + 6) == 0
    assert [c.serial for c in store.revoked_certs(valid_at=NOW)] == ["1001", "1002"]
    assert [c.serial for c in store.revoked_certs(valid_at=NOW + 150)] == ["1002"]  # 1001 expired: off the CRL
    assert all(c.revoked_at == NOW + 5 for c in store.site_certs("minheim"))
    assert store.site_certs("altdorf")[0].revoked_at is None


def test_a_sites_state_is_recorded_and_replaced(store: Store) -> None:
    assert store.site_lifecycle() == {}
    store.set_site_state("minheim", "revoked", at=NOW)
    store.set_site_state("minheim", "active", at=NOW + 1)
    store.set_site_state("altdorf", "removed", at=NOW + 2)
    assert store.site_lifecycle() == {"minheim": ("active", NOW + 1), "altdorf": ("removed", NOW + 2)}
    try:
        store.set_site_state("minheim", "gone", at=NOW)
    except ValueError as exc:
        assert "gone" in str(exc)
    else:
        raise AssertionError("an unknown state was stored")
    assert store.site_lifecycle()["minheim"] == ("active", NOW + 1)


def _version(store: Store, site: str, version: int, base: int, entries: dict[str, str],
             removed: tuple[str, ...] = ()) -> None:
    store.record_cache_version(site, version=version, base_version=base, built_at=version, added=entries,
                               changed={}, removed=list(removed), n_entries=len(entries), size=10)


def test_a_removed_sites_caches_are_dropped_whole_and_its_events_and_other_sites_stay(store: Store) -> None:
    _version(store, "minheim", NOW, 0, {"e1": '{"id":"e1"}', "e2": '{"id":"e2"}'})
    _version(store, "minheim", NOW + 1, NOW, {"e3": '{"id":"e3"}'}, removed=("e1",))
    store.set_retained_full("minheim", NOW + 1)
    _version(store, "altdorf", NOW, 0, {"a1": '{"id":"a1"}'})
    store.store_events("minheim", events([1, 2, 3]))
    dropped = store.drop_site_caches("minheim")
    assert dropped is not None and (dropped.version, dropped.n_entries, dropped.retained_version) == (NOW + 1, 1,
                                                                                                      NOW + 1)
    assert store.cache_state("minheim") is None and store.cache_snapshot("minheim") is None
    assert store.cache_log("minheim", 0) == []
    assert store.drop_site_caches("minheim") is None  # nothing left to drop
    assert store.drop_site_caches("nowhere") is None
    # The events and the other site stay.
    assert sorted(e.seq for e in store.events(site_id="minheim")) == [1, 2, 3]
    snap = store.cache_snapshot("altdorf")
    assert snap is not None and snap[0].version == NOW and snap[1] == {"a1": '{"id":"a1"}'}
    assert [r.version for r in store.cache_log("altdorf", 0)] == [NOW]
    # A reinstated site starts again from base 0, above the versions it had.
    _version(store, "minheim", NOW + 5, 0, {"e9": '{"id":"e9"}'})
    again = store.cache_snapshot("minheim")
    assert again is not None and again[0].version == NOW + 5 and again[1] == {"e9": '{"id":"e9"}'}
    assert again[0].retained_version is None
