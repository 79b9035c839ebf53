"""The store contract for the audit trail, the export pages and the alert queue's
channels (run against every implementation, tests/hub/store_contract.py): audit rows kept
as given, listed in order and by page, purged by retention; a bad row refused with nothing
stored; events read a page at a time in a fixed order, every one once; webhook rows
claimed apart from mail rows, and failing deliveries listed."""

from __future__ import annotations

import json

import pytest

from hub.store import AuditEntry, OutMail, Store
from tests.hub._bookings import NOW
from tests.hub.store_contract import events, store_fixture, store_url_fixture  # noqa: F401


def _entry(at: float, act: str = "unlock", site: str | None = "minheim", **kw: str) -> AuditEntry:
    return AuditEntry(at=at, who=kw.pop("who", "anna"), via=kw.pop("via", "dashboard"), act=act,
                      outcome=kw.pop("outcome", "ok"), site_id=site, **kw)


def test_audit_rows_are_kept_as_given_and_listed_oldest_first(store: Store) -> None:
    first = store.record_audit(_entry(NOW + 5, door="main", detail="seconds=5 command=c-1"))
    second = store.record_audit(_entry(NOW + 1, "lockdown", outcome="refused", reason="403: a caretaker may not"))
    third = store.record_audit(_entry(NOW + 9, "users.add", site=None, who="cli:root", via="cli",
                                      detail="user=bert role=admin sites=*"))
    assert first < second < third
    rows = store.audit_log()
    assert [r.id for r in rows] == [second, first, third]
    r = rows[1]
    assert (r.at, r.who, r.via, r.act, r.outcome, r.site_id, r.door, r.member_id, r.detail, r.reason) == (
        NOW + 5, "anna", "dashboard", "unlock", "ok", "minheim", "main", None, "seconds=5 command=c-1", None)
    assert rows[0].reason == "403: a caretaker may not" and rows[2].site_id is None
    assert [r.id for r in store.audit_log(site_id="minheim")] == [second, first]
    assert [r.id for r in store.audit_log(since=NOW + 1, until=NOW + 9)] == [second, first]
    assert [r.id for r in store.audit_log(newest=True, limit=2)] == [first, third]


def test_a_bad_audit_row_is_refused_and_nothing_is_stored(store: Store) -> None:
    for bad in (_entry(NOW, outcome="maybe"), _entry(NOW, who=""), _entry(NOW, act="")):
        with pytest.raises(ValueError):
            store.record_audit(bad)
    with pytest.raises(ValueError):
        store.audit_log(after=(NOW, 1), newest=True)
    assert store.audit_log() == []


def test_audit_rows_page_by_key_and_are_purged_by_retention(store: Store) -> None:
    ids = [store.record_audit(_entry(NOW + i // 3)) for i in range(25)]  # three rows per second
    got, after = [], None
    while True:
        page = store.audit_log(after=after, limit=4)
        got += [r.id for r in page]
        if len(page) < 4:
            break
        after = (page[-1].at, page[-1].id)
    assert got == ids
    assert store.purge_audit(NOW + 3) == 9
    assert [r.id for r in store.audit_log()] == ids[9:]


def test_events_page_by_key_in_a_fixed_order_each_once(store: Store) -> None:
    store.store_events("minheim", events(list(range(1, 40))))
    store.store_events("altdorf", events(list(range(1, 40)), site="altdorf"))
    same_ts = [(100 + i, f"tie-{i}", "door.opened", float(NOW + 7), json.dumps({"i": i})) for i in range(5)]
    store.store_events("minheim", same_ts, stream="s2")
    got, after = [], None
    while True:
        page = store.events_after(after=after, limit=7)
        got += [(e.site_id, e.stream, e.seq) for e in page]
        if len(page) < 7:
            break
        last = page[-1]
        after = (last.ts, last.site_id, last.stream, last.seq)
    assert len(got) == len(set(got)) == 39 * 2 + 5
    ts = {(e.site_id, e.stream, e.seq): e.ts for e in store.events(limit=1000)}
    assert [ts[k] for k in got] == sorted(ts[k] for k in got)
    one = store.events_after(site_ids=["altdorf"], since=NOW + 10, until=NOW + 20, limit=100)
    assert [(e.site_id, e.seq) for e in one] == [("altdorf", s) for s in range(10, 20)]
    assert store.events_after(site_ids=[], limit=100) == []
    assert store.events_after(type="door.closed", limit=100) == []


def test_webhook_rows_are_claimed_apart_from_mail_and_failures_are_listed(store: Store) -> None:
    mails = [OutMail("anna@example.org", "Alarm", "body"),
             OutMail("https://county.example/hook", "alert.opened", '{"event":"alert.opened"}', channel="webhook")]
    alert = store.open_alert("minheim", "door_forced", "main", at=NOW, detail=None, mails=mails)
    assert alert is not None
    assert {(x.channel, x.recipient) for x in store.alert_mails(alert)} == {
        ("mail", "anna@example.org"), ("webhook", "https://county.example/hook")}
    mail = store.claim_alert_mails(NOW + 1, lease=30)
    hook = store.claim_alert_mails(NOW + 1, lease=30, channel="webhook")
    assert [x.channel for x in mail] == ["mail"] and [x.channel for x in hook] == ["webhook"]
    assert store.next_alert_mail_due() == NOW + 31 and store.next_alert_mail_due("webhook") == NOW + 31
    assert store.failing_alert_deliveries() == []
    store.alert_mail_retry(hook[0].id, "ConnectionRefusedError: down", next_try=NOW + 60)
    store.alert_mail_sent(mail[0].id, now=NOW + 2)
    failing = store.failing_alert_deliveries()
    assert [(x.channel, x.attempts, x.last_error) for x in failing] == [
        ("webhook", 1, "ConnectionRefusedError: down")]
    assert store.failing_alert_deliveries("mail") == []
    store.alert_mail_sent(hook[0].id, now=NOW + 61)
    assert store.failing_alert_deliveries() == [] and store.next_alert_mail_due("webhook") is None
