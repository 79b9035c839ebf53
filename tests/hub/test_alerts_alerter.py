"""The alerter over a real SQLite store, with the clock passed in: reminders and escalation
of an urgent alert nobody acknowledges (once each, also after a restart), acknowledging
stops them, the remaining kinds from statuses, the schedule and the sync state, quiet
hours, and kinds switched off in ``[alerts]``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import config
from hub.alerts import rules
from hub.alerts.alerter import Alerter
from hub.config import HubConfig
from hub.store import AlertPrefs, Store, open_store
from tests.hub.test_hub_config import SITE, write_hub_config
from wire import messages as m

ALTDORF = SITE.replace('id = "minheim"', 'id = "altdorf"').replace("Dorfhaus Minheim", "Dorfhaus Altdorf") \
    .replace("keys/minheim.key", "keys/altdorf.key").replace('"res-', '"altdorf-res-')
HEAD: dict[str, Any] = {"seq": 1, "boot": "b", "clock_synced": True}
T0 = 1_800_000_000.0


def _cfg(tmp_path: Path, extra: str = "") -> HubConfig:
    return config.load(write_hub_config(tmp_path, SITE + ALTDORF, extra=textwrap.dedent("""
        [alerts]
        smtp_host = "mail.example.org"
        from = "torwart@example.org"
        dashboard_url = "https://torwart.example.org"
        escalate_minutes = 1
        remind_minutes = 1
        max_reminders = 2
    """) + extra))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "hub.sqlite3")) as s:
        s.add_user("boss", "admin", None, "scrypt$x", "boss@example.org")
        s.add_user("anna", "caretaker", ["minheim"], "scrypt$x", "anna@example.org")
        s.add_user("ben", "caretaker", ["altdorf"], "scrypt$x", "ben@example.org")
        yield s


class Woken:
    def __init__(self) -> None:
        self.n = 0
        self.notices: list[tuple[str, str]] = []

    def wake(self) -> None:
        self.n += 1

    def notify(self, site: str, what: str) -> None:
        self.notices.append((site, what))


def _alerter(tmp_path: Path, store: Store, extra: str = "") -> tuple[Alerter, Woken]:
    w = Woken()
    return Alerter(_cfg(tmp_path, extra), store, w.wake, w.notify), w


def stored(store: Store, site: str, ev: m.Event, received_at: float) -> m.Event:
    """``ev`` stored as the ingest stores it (the alerter sees an event once it is stored)."""
    store.store_events(site, [(ev.seq, ev.id, ev.type, ev.ts, m.encode(ev).decode())], received_at=received_at)
    return ev


def _sent(store: Store) -> list[tuple[str, str]]:
    return [(x.what, x.recipient) for x in store.alert_mails()]


def test_an_urgent_alert_nobody_acknowledges_is_reminded_and_escalated_once_each_also_after_a_restart(
    tmp_path: Path, store: Store
) -> None:
    al, w = _alerter(tmp_path, store)
    a = al.apply("minheim", rules.Decision("open", "door_forced", "eingang", T0 - 5), now=T0)
    assert a is not None and w.notices == [("minheim", "alert")]
    assert _sent(store) == [("opened", "anna@example.org"), ("opened", "boss@example.org")]
    al.tick(T0 + 59)
    assert len(_sent(store)) == 2
    al.tick(T0 + 60)
    assert _sent(store)[2:] == [("escalated", "boss@example.org"), ("reminder", "anna@example.org")]
    al.tick(T0 + 61)
    assert len(_sent(store)) == 4
    restarted, _ = _alerter(tmp_path, store)  # a new process on the same store
    restarted.tick(T0 + 90)
    assert len(_sent(store)) == 4
    restarted.tick(T0 + 120)
    al.tick(T0 + 121)
    assert _sent(store)[4:] == [("reminder", "anna@example.org")]
    al.tick(T0 + 1000)  # max_reminders = 2
    assert len(_sent(store)) == 5
    esc = next(x for x in store.alert_mails() if x.what == "escalated")
    assert esc.mail_subject == "[Torwart] Eskalation: Dorfhaus Minheim: Tür eingang aufgebrochen"
    assert "https://torwart.example.org/sites/minheim" in esc.body


def test_an_acknowledged_alert_is_not_reminded_nor_escalated_and_a_non_urgent_one_never_is(
    tmp_path: Path, store: Store
) -> None:
    al, _ = _alerter(tmp_path, store)
    a = al.apply("minheim", rules.Decision("open", "door_forced", "eingang", T0), now=T0)
    b = al.apply("minheim", rules.Decision("open", "reader_offline", "r1", T0), now=T0)
    assert a is not None and b is not None
    assert store.ack_alert(a, by="anna", at=T0 + 30) is not None
    al.tick(T0 + 3600)
    assert [x.what for x in store.alert_mails()] == ["opened"] * 4
    # It stays open until the door closes; then the clear message goes out.
    al.on_event("minheim", m.DoorClosed(id="c", site="minheim", ts=T0 + 4000, door="eingang", **HEAD))
    assert [x.what for x in store.alert_mails(a)] == ["opened", "opened", "resolved", "resolved"]


def test_storage_error_and_lockdown_come_from_the_status_and_clear_with_it(tmp_path: Path, store: Store) -> None:
    al, _ = _alerter(tmp_path, store)
    al.on_status("minheim", m.Status(state="online", ts=T0, storage_error="database or disk is full", lockdown=True))
    al.on_status("minheim", m.Status(state="online", ts=T0 + 1, storage_error="database or disk is full",
                                     lockdown=True))
    assert sorted((a.kind, a.detail) for a in store.open_alerts("minheim")) == [
        ("lockdown", None), ("storage_error", "database or disk is full")]
    al.on_status("minheim", m.Status(state="offline"))  # the Last Will changes nothing
    assert len(store.open_alerts("minheim")) == 2
    al.on_status("minheim", m.Status(state="online", ts=T0 + 2))
    assert store.open_alerts("minheim") == []
    subjects = [x.mail_subject for x in store.alert_mails() if x.recipient == "anna@example.org"]
    assert "[Torwart] Sperre begonnen: Dorfhaus Minheim: alle Türen gesperrt (Lockdown)" in subjects
    assert "[Torwart] Sperre beendet: Dorfhaus Minheim: alle Türen gesperrt (Lockdown)" in subjects
    assert not any("ben@" in x.recipient for x in store.alert_mails())  # another site's caretaker


def test_an_untrusted_clock_and_a_stale_cache_alert_after_their_durations(tmp_path: Path, store: Store) -> None:
    al, _ = _alerter(tmp_path, store, "clock_minutes = 30\ncache_minutes = 30\n")
    store.sync_sites(al.cfg.sites)
    store.update_site_state("minheim", {"online": True, "since": T0, "cache_version": 1})
    store.record_cache_version("minheim", version=2, base_version=0, built_at=int(T0), added={}, changed={},
                               removed=[], n_entries=0, size=0)
    al.on_status("minheim", m.Status(state="online", ts=T0, clock_synced=False, cache_version=1), now=T0)
    al.tick(T0 + 1)  # the cache is seen behind from here
    al.tick(T0 + 1799)
    assert store.open_alerts("minheim") == []
    al.tick(T0 + 1801)
    assert [a.kind for a in store.open_alerts("minheim")] == ["clock_untrusted", "cache_stale"]
    al.on_status("minheim", m.Status(state="online", ts=T0 + 1900, clock_synced=True, cache_version=2),
                 now=T0 + 1900)
    store.update_site_state("minheim", {"cache_version": 2})
    al.tick(T0 + 1901)
    assert store.open_alerts("minheim") == []
    assert [x.what for x in store.alert_mails() if x.recipient == "anna@example.org"] == [
        "opened", "opened", "resolved", "resolved"]


def test_repeated_denials_alert_once_and_clear_after_a_quiet_window(tmp_path: Path, store: Store) -> None:
    al, _ = _alerter(tmp_path, store, "denials = 3\ndenials_minutes = 2\n")
    for i in range(5):
        ev = m.AccessDenied(id=f"d{i}", site="altdorf", ts=T0 + i, door="eingang", cred=None,
                            reason="unknown_credential", **{**HEAD, "seq": i + 1})
        al.on_event("altdorf", stored(store, "altdorf", ev, T0 + 3600), now=T0 + 3600)
    # A site whose clock is not trusted: counted on the hub's clock (its own says 1970).
    for i in range(3):
        ev = m.AccessDenied(id=f"u{i}", site="minheim", ts=5.0, door="hof", cred=None, reason="wrong_door",
                            **{**HEAD, "seq": i + 1, "clock_synced": False})
        al.on_event("minheim", stored(store, "minheim", ev, T0 + i), now=T0 + i)
    assert [(a.site_id, a.subject, a.opened_at) for a in store.open_alerts()] == [
        ("altdorf", "eingang", T0 + 2), ("minheim", "hof", T0 + 2)]
    al.apply("minheim", rules.Decision("clear", "denials", "hof", T0 + 3), now=T0 + 3)
    [alt] = store.open_alerts("altdorf")
    assert (alt.kind, alt.subject) == ("denials", "eingang")
    assert sorted(x.recipient for x in store.alert_mails(alt.id)) == ["ben@example.org", "boss@example.org"]
    al.tick(T0 + 100)
    assert store.open_alerts() != []
    al.tick(T0 + 125)
    assert store.open_alerts() == []


def test_a_failing_booking_sync_alerts_those_who_see_every_site_and_clears_on_success(
    tmp_path: Path, store: Store
) -> None:
    al, _ = _alerter(tmp_path, store)
    source = al.cfg.booking.adapter
    for i in range(2):
        store.record_sync_error(source, "503 Service Unavailable", int(T0) + i)
    al.tick(T0 + 10)
    assert store.open_alerts() == []
    store.record_sync_error(source, "503 Service Unavailable", int(T0) + 20)
    al.tick(T0 + 30)
    al.tick(T0 + 31)
    [a] = store.open_alerts()
    assert (a.site_id, a.kind, a.detail) == ("", "sync_failing", "503 Service Unavailable")
    assert [x.recipient for x in store.alert_mails()] == ["boss@example.org"]
    assert "https://torwart.example.org/alerts" in store.alert_mails()[0].body
    store.record_sync_ok(source, None, int(T0) + 40)
    al.tick(T0 + 50)
    assert store.open_alerts() == []


def test_quiet_hours_hold_back_a_non_urgent_message_but_not_an_urgent_one(tmp_path: Path, store: Store) -> None:
    store.set_alert_prefs(AlertPrefs(user="anna", lang="en", quiet_start=0, quiet_end=23 * 60 + 59), now=T0)
    al, _ = _alerter(tmp_path, store)
    night = T0  # 2027-01-15 08:00 UTC: inside 00:00-23:59 local
    al.apply("minheim", rules.Decision("open", "reader_offline", "r1", night), now=night)
    al.apply("minheim", rules.Decision("open", "door_forced", "eingang", night), now=night)
    anna = {x.what + ":" + x.mail_subject.split(":")[-1].strip(): x.next_try for x in store.alert_mails()
            if x.recipient == "anna@example.org"}
    assert anna["opened:door eingang forced open"] == night
    assert anna["opened:reader r1 offline"] > night + 3600
    boss = [x.next_try for x in store.alert_mails() if x.recipient == "boss@example.org"]
    assert boss == [night, night]  # the admin has no quiet hours


def test_a_kind_switched_off_in_the_config_is_never_opened(tmp_path: Path, store: Store) -> None:
    al, _ = _alerter(tmp_path, store, 'kinds = ["door_forced", "site_offline"]\n')
    assert al.apply("minheim", rules.Decision("open", "reader_offline", "r1", T0), now=T0) is None
    assert al.apply("minheim", rules.Decision("open", "door_forced", "eingang", T0), now=T0) is not None
    assert [a.kind for a in store.open_alerts()] == ["door_forced"]


@pytest.mark.parametrize(("extra", "key"), [
    ('kinds = ["door_forced", "fire"]\n', "alerts.kinds"),
    ('urgent = ["smoke"]\n', "alerts.urgent"),
    ("escalate_minutes = 0\n", "alerts.escalate_minutes"),
    ("denials = 1\n", "alerts.denials"),
    ("max_reminders = -1\n", "alerts.max_reminders"),
])
def test_a_bad_new_alerts_key_is_named(tmp_path: Path, extra: str, key: str) -> None:
    from tests.hub.test_hub_config import refused

    path = write_hub_config(tmp_path, extra='[alerts]\nsmtp_host = "m"\nfrom = "a@b.de"\n' + extra)
    assert refused(path).key.startswith(key)  # alerts.kinds[1]: the item
