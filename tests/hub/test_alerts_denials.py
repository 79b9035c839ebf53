"""The repeated-denials alert counted from the stored refusals (hub/alerts/denials.py), on
every store implementation: two nodes are two ``Alerter``s, each on its own store object
of one store (the shared subscription gives each node some of a site's events; the leader
ticks); a restart is the store opened again under a new ``Alerter``. Each refusal is stored
before its node's alerter sees it, as the ingest does; the clock is passed in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.alerts.alerter import Alerter
from hub.config import HubConfig
from hub.store import Store, open_store
from tests.hub.store_contract import store_url_fixture  # noqa: F401
from tests.hub.test_alerts_alerter import T0, Woken, _cfg, stored
from wire import messages as m


def _setup(tmp_path: Path, url: str, count: int) -> HubConfig:
    cfg = _cfg(tmp_path, f"denials = {count}\ndenials_minutes = 2\n")
    with open_store(url) as s:
        s.add_user("anna", "caretaker", ["minheim"], "scrypt$x", "anna@example.org")
        s.sync_sites(cfg.sites)
    return cfg


def _node(cfg: HubConfig, store: Store) -> Alerter:
    return Alerter(cfg, store, Woken().wake)


def _deny(al: Alerter, seq: int, at: float, door: str = "eingang", reason: str = "unknown_credential", *,
          site: str = "minheim", ts: float | None = None, synced: bool = True) -> None:
    """Refusal ``seq`` of ``site`` stored by ``al``'s node at ``at`` and seen by its alerter."""
    ev = m.AccessDenied(id=f"{site}-{seq}", site=site, seq=seq, boot="b", ts=at if ts is None else ts,
                        clock_synced=synced, door=door, cred=None, reason=reason)  # type: ignore[arg-type]
    al.on_event(site, stored(al.store, site, ev, at), now=at)


def _opened(s: Store) -> list[tuple[str, str, float, str | None]]:
    return [(a.kind, a.subject, a.opened_at, a.detail) for a in s.open_alerts("minheim")]


def _anna(s: Store) -> list[str]:
    """What anna was sent of openings and clearings (reminders aside)."""
    return [x.what for x in s.alert_mails() if x.recipient == "anna@example.org" and x.what in ("opened", "resolved")]


def test_refusals_split_between_two_nodes_open_the_alert_at_exactly_the_count_in_total(
    tmp_path: Path, store_url: str,
) -> None:
    cfg = _setup(tmp_path, store_url, 4)
    with open_store(store_url) as s_a, open_store(store_url) as s_b:
        a, b = _node(cfg, s_a), _node(cfg, s_b)
        _deny(a, 1, T0)
        _deny(b, 2, T0 + 10)
        _deny(a, 3, T0 + 20)
        # None of these count: the site's own state, another door, another site.
        _deny(b, 4, T0 + 21, reason="lockdown")
        _deny(a, 5, T0 + 22, door="hof")
        _deny(b, 1, T0 + 23, site="altdorf")
        assert s_a.open_alerts() == []
        _deny(b, 6, T0 + 30)
        assert _opened(s_a) == [("denials", "eingang", T0 + 30, "4 / 2 min")]
        _deny(a, 7, T0 + 40)  # still open: nothing more
        assert _opened(s_b) == [("denials", "eingang", T0 + 30, "4 / 2 min")]
        assert _anna(s_a) == ["opened"]


def test_the_leader_keeps_the_alert_open_while_another_node_takes_refusals_and_clears_it_after_a_quiet_window(
    tmp_path: Path, store_url: str,
) -> None:
    cfg = _setup(tmp_path, store_url, 3)
    with open_store(store_url) as s_leader, open_store(store_url) as s_ingest:
        leader, ingest = _node(cfg, s_leader), _node(cfg, s_ingest)
        for i in range(3):
            _deny(ingest, i + 1, T0 + i)
        [alert] = s_leader.open_alerts("minheim")
        # One refusal every 100 s, all at the other node: never a whole window without one.
        for k in range(1, 6):
            _deny(ingest, 3 + k, T0 + 2 + 100 * k)
            leader.tick(T0 + 2 + 100 * k + 99)
            assert [x.id for x in s_leader.open_alerts("minheim")] == [alert.id]
        leader.tick(T0 + 502 + 119)
        assert [x.id for x in s_leader.open_alerts("minheim")] == [alert.id]
        leader.tick(T0 + 502 + 120)
        assert s_leader.open_alerts() == []
        assert _anna(s_leader) == ["opened", "resolved"]  # it never closed and opened again


def test_a_restart_keeps_counting_the_window(tmp_path: Path, store_url: str) -> None:
    cfg = _setup(tmp_path, store_url, 3)
    with open_store(store_url) as s:
        before = _node(cfg, s)
        _deny(before, 1, T0 - 200)  # a window and more before the others: not counted
        _deny(before, 2, T0)
        _deny(before, 3, T0 + 30)
        assert s.open_alerts() == []
    with open_store(store_url) as s:
        after = _node(cfg, s)
        _deny(after, 4, T0 + 60)
        assert _opened(s) == [("denials", "eingang", T0 + 60, "3 / 2 min")]
    with open_store(store_url) as s:
        again = _node(cfg, s)
        _deny(again, 5, T0 + 100)
        again.tick(T0 + 100 + 119)  # the last refusal was taken in before this restart
        assert [a.kind for a in s.open_alerts()] == ["denials"]
        again.tick(T0 + 100 + 120)
        assert s.open_alerts() == []


def test_refusals_count_at_the_sites_trusted_time_else_at_their_arrival(tmp_path: Path, store_url: str) -> None:
    cfg = _setup(tmp_path, store_url, 3)
    with open_store(store_url) as s:
        al = _node(cfg, s)
        # An outbox delivering the refusals of an afternoon at once (trusted clock, 5 minutes
        # apart): not guessing.
        for i in range(4):
            _deny(al, i + 1, T0 + 3600, ts=T0 + 300 * i)
        assert s.open_alerts() == []
        # An untrusted clock (its own says 1970): counted as they arrive.
        for i in range(3):
            _deny(al, 10 + i, T0 + 4000 + i, door="hof", ts=5.0, synced=False)
        assert [(a.subject, a.opened_at) for a in s.open_alerts()] == [("hof", T0 + 4002)]


def _reads(store: Store) -> list[None]:
    """From now on, one entry per ``access_denied`` read of ``store`` (this object only)."""
    reads: list[None] = []
    read: Callable[..., Any] = store.access_denied

    def counted(*args: Any, **kw: Any) -> Any:
        reads.append(None)
        return read(*args, **kw)

    store.access_denied = counted  # type: ignore[method-assign]
    return reads


def test_a_refusal_costs_one_read_and_a_tick_reads_only_for_open_denials_alerts(
    tmp_path: Path, store_url: str,
) -> None:
    cfg = _setup(tmp_path, store_url, 3)
    with open_store(store_url) as s:
        al = _node(cfg, s)
        reads = _reads(s)
        _deny(al, 1, T0, reason="lockdown")  # not guessing: no read
        al.on_event("minheim", stored(s, "minheim", m.DoorOpened(id="o", site="minheim", seq=2, boot="b", ts=T0,
                                                                  clock_synced=True, door="eingang"), T0), now=T0)
        al.tick(T0 + 1)
        assert reads == []
        for i in range(3):
            _deny(al, 3 + i, T0 + 2 + i)
        assert len(reads) == 3 and [a.kind for a in s.open_alerts()] == ["denials"]
        al.tick(T0 + 10)
        assert len(reads) == 4
