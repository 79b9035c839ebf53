"""The store contract of acknowledging, reminding and escalating alerts, the alert list and
the users' alert settings (every store implementation, tests/hub/store_contract.py): each
step is taken once, however often or from however many processes it is asked for."""

from __future__ import annotations

from hub.store import AlertPrefs, OutMail, Store, open_store
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401


def _mail(to: str, not_before: float | None = None) -> OutMail:
    return OutMail(recipient=to, subject="s", body="b", not_before=not_before)


def test_an_acknowledgement_is_recorded_once_and_the_first_one_stands(store: Store) -> None:
    a = store.open_alert("minheim", "door_forced", "eingang", at=100.0, detail=None, mails=[_mail("x@y.de")],
                         now=105.0)
    assert a is not None
    row = store.get_alert(a)
    assert row is not None and (row.acked_at, row.acked_by, row.reminders, row.raised_at) == (None, None, 0, 105.0)
    first = store.ack_alert(a, by="anna", at=200.0)
    assert first is not None and (first.acked_by, first.acked_at) == ("anna", 200.0)
    again = store.ack_alert(a, by="boss", at=300.0)
    assert again is not None and (again.acked_by, again.acked_at) == ("anna", 200.0)
    assert store.ack_alert(a + 1000, by="anna", at=1.0) is None
    assert store.get_alert(a + 1000) is None
    # A resolved alert is not acknowledged afterwards.
    b = store.open_alert("minheim", "reader_tamper", "r1", at=100.0, detail=None, mails=[])
    assert b is not None and store.resolve_alert("minheim", "reader_tamper", "r1", at=150.0, mails=[]) == b
    after = store.ack_alert(b, by="anna", at=200.0)
    assert after is not None and after.acked_at is None and after.resolved_at == 150.0


def test_reminders_are_queued_in_order_once_each_and_never_after_an_acknowledgement(store: Store) -> None:
    a = store.open_alert("minheim", "door_forced", "eingang", at=100.0, detail=None, mails=[])
    assert a is not None
    assert not store.remind_alert(a, number=2, at=200.0, mails=[_mail("x@y.de")])  # not the next number
    assert store.remind_alert(a, number=1, at=200.0, mails=[_mail("x@y.de")])
    assert not store.remind_alert(a, number=1, at=201.0, mails=[_mail("x@y.de")])  # a second process, a restart
    assert store.escalate_alert(a, at=210.0, mails=[_mail("boss@y.de")])
    assert not store.escalate_alert(a, at=211.0, mails=[_mail("boss@y.de")])
    store.ack_alert(a, by="anna", at=220.0)
    assert not store.remind_alert(a, number=2, at=300.0, mails=[_mail("x@y.de")])
    row = store.get_alert(a)
    assert row is not None and (row.reminders, row.escalated_at) == (1, 210.0)
    assert [(x.what, x.recipient) for x in store.alert_mails(a)] == [("reminder", "x@y.de"),
                                                                     ("escalated", "boss@y.de")]
    b = store.open_alert("minheim", "site_offline", "", at=100.0, detail=None, mails=[])
    assert b is not None and store.resolve_alert("minheim", "site_offline", "", at=120.0, mails=[]) == b
    assert not store.escalate_alert(b, at=500.0, mails=[_mail("boss@y.de")])  # resolved: nothing more


def test_messages_are_due_on_the_hubs_clock_not_a_sites_that_runs_ahead(store: Store) -> None:
    a = store.open_alert("minheim", "door_forced", "eingang", at=10_000.0, detail=None, mails=[_mail("x@y.de")],
                         now=100.0)
    assert a is not None
    assert store.resolve_alert("minheim", "door_forced", "eingang", at=10_001.0, mails=[_mail("x@y.de")],
                               now=101.0) == a
    assert [x.what for x in store.claim_alert_mails(200.0, lease=10.0)] == ["opened", "resolved"]


def test_a_message_held_back_is_not_due_before_its_time(store: Store) -> None:
    a = store.open_alert("minheim", "reader_offline", "r1", at=100.0, detail=None,
                         mails=[_mail("now@y.de"), _mail("later@y.de", not_before=5000.0)])
    assert a is not None
    now = store.claim_alert_mails(200.0, lease=10.0)
    assert [x.recipient for x in now] == ["now@y.de"]
    store.alert_mail_sent(now[0].id, now=201.0)
    assert store.claim_alert_mails(4999.0, lease=10.0) == []
    assert store.next_alert_mail_due() == 5000.0
    assert [x.recipient for x in store.claim_alert_mails(5000.0, lease=10.0)] == ["later@y.de"]


def test_the_alert_list_filters_by_site_kind_state_and_time_newest_first(store: Store) -> None:
    ids = [store.open_alert(site, kind, subj, at=at, detail=None, mails=[]) for site, kind, subj, at in (
        ("minheim", "door_forced", "eingang", 100.0), ("altdorf", "door_forced", "eingang", 200.0),
        ("minheim", "site_offline", "", 300.0), ("", "sync_failing", "", 400.0))]
    store.resolve_alert("minheim", "door_forced", "eingang", at=500.0, mails=[])
    assert [a.id for a in store.alerts()] == ids[::-1]
    assert [a.id for a in store.alerts(["minheim"])] == [ids[2], ids[0]]
    assert [a.id for a in store.alerts(["minheim"], open_only=True)] == [ids[2]]
    assert [a.id for a in store.alerts(kind="door_forced")] == [ids[1], ids[0]]
    assert [a.id for a in store.alerts(["minheim", "altdorf"], since=450.0)] == [ids[2], ids[1], ids[0]]
    assert [a.id for a in store.alerts(since=600.0, kind="door_forced")] == [ids[1]]  # open ones always
    assert store.alerts([]) == []
    assert len(store.alerts(limit=2)) == 2


def test_alert_settings_default_change_and_go_with_their_user(store: Store) -> None:
    assert store.get_alert_prefs("anna") == AlertPrefs(user="anna")
    store.add_user("anna", "caretaker", ["minheim"], "scrypt$x", "anna@x.de")
    p = AlertPrefs(user="anna", lang="en", kinds=("door_forced", "site_offline"), channels=("email",),
                   quiet_start=1320, quiet_end=420)
    store.set_alert_prefs(p, now=1.0)
    assert store.get_alert_prefs("anna") == p
    none = AlertPrefs(user="anna", kinds=(), channels=())
    store.set_alert_prefs(none, now=2.0)
    assert store.alert_prefs() == {"anna": none}
    assert store.set_user_email("anna", None) and not store.set_user_email("nobody", "x@y.de")
    user = store.get_user("anna")
    assert user is not None and user.email is None
    store.remove_user("anna")
    assert store.alert_prefs() == {}


def test_two_stores_on_one_url_take_each_reminder_once(store_url: str) -> None:
    with open_store(store_url) as one, open_store(store_url) as two:
        a = one.open_alert("minheim", "door_forced", "eingang", at=100.0, detail=None, mails=[])
        assert a is not None
        took = [s.remind_alert(a, number=1, at=200.0, mails=[_mail("x@y.de")]) for s in (one, two, one)]
        assert took == [True, False, False]
        assert len(two.alert_mails(a)) == 1


def test_retention_deletes_resolved_alerts_with_their_messages_and_keeps_open_ones(store: Store) -> None:
    old = store.open_alert("minheim", "door_forced", "eingang", at=100.0, detail=None, mails=[_mail("x@y.de")])
    still = store.open_alert("minheim", "site_offline", "", at=100.0, detail=None, mails=[_mail("x@y.de")])
    recent = store.open_alert("minheim", "door_held", "hof", at=100.0, detail=None, mails=[_mail("x@y.de")])
    assert old is not None and still is not None and recent is not None
    store.resolve_alert("minheim", "door_forced", "eingang", at=200.0, mails=[_mail("x@y.de")])
    store.resolve_alert("minheim", "door_held", "hof", at=400.0, mails=[])
    assert store.purge_alerts(300.0) == 1
    assert store.get_alert(old) is None and store.alert_mails(old) == []
    assert {a.id for a in store.alerts()} == {still, recent}
    assert len(store.alert_mails(still)) == 1
