"""The slow alerts' durations survive a restart and a change of node: the alerter over a
real SQLite store file, with the clock passed in. A restart is the store closed and opened
again under a new ``Alerter``; two nodes are two ``Alerter``s, each on its own store
object of one file (the leader ticks, the other takes in the site's statuses)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.alerts import rules
from hub.alerts.alerter import Alerter
from hub.config import HubConfig
from hub.store import Store, open_store
from hub.store.sqlite import SqliteStore
from tests.hub.test_alerts_alerter import T0, Woken, _cfg
from wire import messages as m

MINUTES = "clock_minutes = 30\ncache_minutes = 20\n"


class CountingStore(SqliteStore):
    """The SQLite store, counting the write transactions it begins."""

    writes = 0

    @contextmanager
    def _write(self) -> Iterator[Any]:
        self.writes += 1
        with super()._write() as c:
            yield c


def _node(cfg: HubConfig, store: Store) -> Alerter:
    return Alerter(cfg, store, Woken().wake)


def _setup(tmp_path: Path) -> tuple[HubConfig, Path]:
    cfg = _cfg(tmp_path, MINUTES)
    path = tmp_path / "hub.sqlite3"
    with open_store(str(path)) as s:
        s.add_user("anna", "caretaker", ["minheim"], "scrypt$x", "anna@example.org")
        s.sync_sites(cfg.sites)
        s.update_site_state("minheim", {"online": True, "since": T0, "cache_version": 1})
    return cfg, path


def _untrusted(at: float) -> m.Status:
    return m.Status(state="online", ts=at, clock_synced=False, cache_version=1)


def test_a_condition_seen_before_a_restart_alerts_at_its_first_sighting_plus_the_duration(tmp_path: Path) -> None:
    cfg, path = _setup(tmp_path)
    with open_store(str(path)) as s:
        before = _node(cfg, s)
        before.on_status("minheim", _untrusted(T0), now=T0)
        before.tick(T0 + 600)
        assert s.open_alerts() == []
    # The hub restarts 20 minutes in: its first status after the restart is not the start.
    with open_store(str(path)) as s:
        after = _node(cfg, s)
        after.on_status("minheim", _untrusted(T0 + 1200), now=T0 + 1200)
        after.tick(T0 + 1799)
        assert s.open_alerts() == []
        after.tick(T0 + 1800)
        [a] = s.open_alerts("minheim")
        assert (a.kind, a.opened_at, a.raised_at) == ("clock_untrusted", T0, T0 + 1800)


def test_a_status_taken_in_by_another_node_counts_from_the_same_start_and_its_end_clears_everywhere(
    tmp_path: Path,
) -> None:
    cfg, path = _setup(tmp_path)
    with open_store(str(path)) as s_ingest, open_store(str(path)) as s_leader:
        ingest, leader = _node(cfg, s_ingest), _node(cfg, s_leader)
        ingest.on_event("minheim", m.ClockUntrusted(id="e1", site="minheim", seq=1, boot="b", ts=T0,
                                                    clock_synced=False, detail="no NTP"), now=T0)
        leader.tick(T0 + 1)
        assert s_leader.alert_conditions("minheim") == {("minheim", rules.CLOCK_UNTRUSTED): T0}
        leader.on_status("minheim", _untrusted(T0 + 900), now=T0 + 900)  # a later sighting elsewhere
        ingest.tick(T0 + 1800)  # the leader changed: the other node ticks now
        assert [(a.kind, a.opened_at) for a in s_ingest.open_alerts("minheim")] == [("clock_untrusted", T0)]
        # The clock is trusted again, seen by the node that does not tick: the row goes ...
        ingest.on_status("minheim", m.Status(state="online", ts=T0 + 1900, clock_synced=True, cache_version=1),
                         now=T0 + 1900)
        assert s_leader.alert_conditions() == {}
        # ... and the ticking node, which saw the condition hold, clears the alert.
        leader.tick(T0 + 1901)
        assert s_leader.open_alerts("minheim") == []


def test_a_stale_cache_counts_from_the_first_tick_that_saw_it_whichever_node_ticks(tmp_path: Path) -> None:
    cfg, path = _setup(tmp_path)
    with open_store(str(path)) as s:
        s.record_cache_version("minheim", version=2, base_version=0, built_at=int(T0), added={}, changed={},
                               removed=[], n_entries=0, size=0)
    with open_store(str(path)) as s_a, open_store(str(path)) as s_b:
        a, b = _node(cfg, s_a), _node(cfg, s_b)
        a.tick(T0)
        b.tick(T0 + 600)  # the lease moved to b: b's first sighting is not the start
        assert s_b.alert_conditions() == {("minheim", rules.CACHE_STALE): T0}
        b.tick(T0 + 1199)
        assert s_b.open_alerts() == []
        b.tick(T0 + 1200)
        assert [(x.kind, x.opened_at) for x in s_b.open_alerts()] == [("cache_stale", T0)]
        s_b.update_site_state("minheim", {"cache_version": 2})
        a.tick(T0 + 1300)
        assert s_a.alert_conditions() == {} and s_a.open_alerts() == []


def test_statuses_and_ticks_that_change_nothing_write_nothing(tmp_path: Path) -> None:
    cfg, path = _setup(tmp_path)
    with CountingStore(path) as s:
        al = _node(cfg, s)
        al.on_status("minheim", _untrusted(T0), now=T0)
        al.tick(T0 + 1)
        assert s.writes == 1  # the start, once
        for i in range(2, 6):
            al.on_status("minheim", _untrusted(T0 + i), now=T0 + i)
            al.tick(T0 + i)
        assert s.writes == 1
        assert s.alert_conditions() == {("minheim", rules.CLOCK_UNTRUSTED): T0}
        al.on_status("minheim", m.Status(state="online", ts=T0 + 10, clock_synced=True, cache_version=1),
                     now=T0 + 10)
        assert s.writes == 2 and s.alert_conditions() == {}  # the end, once
        for i in range(11, 15):
            al.on_status("minheim", m.Status(state="online", ts=T0 + i, clock_synced=True, cache_version=1),
                         now=T0 + i)
            al.tick(T0 + i)
        assert s.writes == 2


def test_the_starts_of_a_site_removed_from_the_config_are_forgotten(tmp_path: Path) -> None:
    cfg, path = _setup(tmp_path)
    with open_store(str(path)) as s:
        s.hold_condition("gone", rules.CACHE_STALE, since=T0)
        s.hold_condition("altdorf", rules.CLOCK_UNTRUSTED, since=T0)  # configured: kept
        _node(cfg, s).tick(T0 + 1)
        assert s.alert_conditions() == {("altdorf", rules.CLOCK_UNTRUSTED): T0}
