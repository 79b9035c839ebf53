"""The audit trail and the CSV exports over real HTTP against a running hub (and the real
CLI on the same store): every act through the dashboard, the API and the command line is
recorded once with who, where and what came of it, refusals included; admins see it, a
caretaker does not; events and audit rows come out as CSV that Python's ``csv`` module
reads back whole, with German umlauts intact, whatever the size of the range."""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import io
import time
import uuid

import pytest
import requests

from hub.__main__ import main as hub_main
from hub.export import AUDIT_COLUMNS, EVENT_COLUMNS
from hub.store import AuditEntry, AuditRow, OutMail
from wire import messages as m

from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)
from .test_dashboard_lockdown import commands_fixture, set_lockdown  # noqa: F401 (the commands fixture)

NAME = "Jörg Müßig-Überall"
#: More events than one page of the export (hub.core.export.PAGE) and one chunk of text.
N_EVENTS = 2345


def iso_ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).astimezone().timestamp()


def audit(env: Env, **filters: object) -> list[AuditRow]:
    store = env.hub.service.store
    return env.hub.service.call(lambda: store.audit_log(limit=10000, **filters))  # type: ignore[arg-type]


def rows_of(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_acts_through_dashboard_api_and_cli_are_recorded_once_with_who_where_and_outcome(
        env: Env, commands: object, capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time()
    url = env.url + "/api/v1/sites/minheim/commands"
    anna = env.login("anna")
    r = anna.post(url, json={"action": "unlock", "door": "eingang", "seconds": 5}, timeout=10)
    assert r.status_code == 202
    sent = r.json()["id"]
    assert anna.post(url, json={"action": "lockdown"}, timeout=10).status_code == 403
    set_lockdown(env, "minheim", True)
    bearer = {"Authorization": f"Bearer {env.county.admin_token}"}
    assert requests.post(url, json={"action": "unlock", "door": "eingang"}, headers=bearer,
                         timeout=10).status_code == 409
    form = {"csrf": str(anna.headers["X-CSRF-Token"]), "action": "unlock", "door": "coworking", "seconds": "5"}
    r = anna.post(env.url + "/sites/minheim/actions", data=form, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "lockdown" in r.headers["location"]
    cfg = str(env.county.hub_config_path)
    assert hub_main(["unlock", "minheim", "eingang", "--timeout", "3", "--config", cfg]) == 1
    assert hub_main(["grants", "add", "m-1", "minheim", "--label", "Hausmeisterin", "--config", cfg]) == 0
    capsys.readouterr()

    rows = [r for r in audit(env, since=before) if not r.act.startswith("export.")]
    got = [(r.who, r.via, r.act, r.site_id, r.door, r.outcome) for r in rows]
    me = f"cli:{getpass.getuser()}"
    assert got == [
        ("anna", "dashboard", "unlock", "minheim", "eingang", "ok"),
        ("anna", "dashboard", "lockdown", "minheim", None, "refused"),
        ("api-token", "api", "unlock", "minheim", "eingang", "refused"),
        ("anna", "dashboard", "unlock", "minheim", "coworking", "refused"),
        (me, "cli", "unlock", "minheim", "eingang", "refused"),
        (me, "cli", "grants.add", "minheim", None, "ok"),
    ]
    ok, forbidden, locked, confirm, cli, grant = rows
    assert ok.detail == f"seconds=5 command={sent}" and ok.reason is None
    assert forbidden.reason is not None and forbidden.reason.startswith("403: a caretaker may not lockdown")
    assert locked.reason == "409: site 'minheim' is in lockdown"
    assert confirm.reason is not None and confirm.reason.startswith("409: ")
    assert cli.reason == "409: site 'minheim' is in lockdown"
    assert grant.member_id == "m-1" and grant.detail is not None and "label=Hausmeisterin" in grant.detail
    assert all(before - 1 <= r.at <= time.time() for r in rows)

    # torwart-hub audit: the table, and the CSV that says who unlocked.
    assert hub_main(["audit", "--site", "minheim", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "anna" in out and "api-token" in out and "409: site 'minheim' is in lockdown" in out
    since = dt.datetime.fromtimestamp(before - 1).isoformat(timespec="seconds")
    assert hub_main(["audit", "--csv", "--since", since, "--config", cfg]) == 0
    table = rows_of(capsys.readouterr().out)
    assert list(table[0]) == list(AUDIT_COLUMNS)
    unlocks = [x for x in table if x["act"] == "unlock"]
    assert [(x["who"], x["outcome"], x["door"]) for x in unlocks] == [
        ("anna", "ok", "eingang"), ("api-token", "refused", "eingang"), ("anna", "refused", "coworking"),
        (me, "refused", "eingang")]
    assert dt.datetime.fromisoformat(unlocks[0]["time"]).timestamp() == pytest.approx(ok.at, abs=1)

    # A booking sync run by hand is an act too (the running hub's own syncs are not).
    assert hub_main(["sync", "--config", cfg]) == 0
    capsys.readouterr()
    synced = [r for r in audit(env, since=before) if r.act == "bookings.sync"]
    assert [(r.who, r.via, r.outcome) for r in synced] == [(me, "cli", "ok")]
    assert synced[0].detail is not None and " bookings, " in synced[0].detail


def test_the_audit_page_and_its_csv_are_for_admins_only(env: Env) -> None:
    boss, anna = env.login("boss"), env.login("anna")
    # An act of the boss's, to find on the page.
    assert boss.post(env.url + "/api/v1/sites/wittlich/commands", json={"action": "checkout_all"},
                     timeout=10).status_code == 202
    # An alert webhook whose last try failed: listed on the page.
    store = env.hub.service.store
    hook = OutMail("https://county.example/hook", "alert.opened", "{}", channel="webhook")

    def failing() -> None:
        store.open_alert("wittlich", "door_forced", "eingang", at=time.time(), detail=None, mails=[hook])
        row = store.claim_alert_mails(time.time(), lease=60, channel="webhook")[0]
        store.alert_mail_retry(row.id, "NotDelivered: HTTP 503 Service Unavailable", next_try=time.time() + 3600)

    env.hub.service.call(failing)
    page = boss.get(env.url + "/audit?site=&since=&until=", timeout=10)  # the form, nothing chosen
    assert page.status_code == 200 and "checkout_all" in page.text and "boss" in page.text
    assert "https://county.example/hook" in page.text and "HTTP 503 Service Unavailable" in page.text
    assert 'href="/audit"' in boss.get(env.url + "/", timeout=10).text
    assert 'href="/audit"' not in anna.get(env.url + "/", timeout=10).text
    for path in ("/audit", "/export/audit.csv"):
        r = anna.get(env.url + path, timeout=10)
        assert r.status_code == 403, path
    r = requests.get(env.url + "/export/audit.csv?site=wittlich", timeout=10,
                     headers={"Authorization": f"Bearer {env.county.admin_token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = rows_of(r.content.decode("utf-8"))
    assert any(x["who"] == "boss" and x["act"] == "checkout_all" and x["outcome"] == "ok" for x in rows)
    assert {x["site"] for x in rows} == {"wittlich"}
    # The download itself is recorded.
    assert any(r.act == "export.audit" and r.who == "api-token" for r in audit(env, site_id="wittlich"))
    # Bad filters: 400 and a site nobody has: 404, nothing streamed.
    assert boss.get(env.url + "/audit?since=gestern", timeout=10).status_code == 400
    assert boss.get(env.url + "/export/audit.csv?site=atlantis", timeout=10).status_code == 404
    assert boss.get(env.url + "/export/audit.csv?since=2026-01-02&until=2026-01-01", timeout=10).status_code == 400


@pytest.fixture(scope="module", name="exported")
def exported_fixture(env: Env) -> tuple[float, float]:
    """N_EVENTS door openings with a member named with umlauts at minheim, one event
    before and one after the range, and one at wittlich; the range (since, until)."""
    store = env.hub.service.store
    who = env.hub.service.call(lambda: store.add_member("m-umlaut", NAME, None).who)
    t0 = time.time() - 100_000

    def ev(site: str, seq: int, ts: float, door: str = "eingang") -> tuple[int, str, str, float, str]:
        e = m.AccessGranted(id=uuid.uuid4().hex, site=site, seq=seq, boot="b", ts=ts, clock_synced=True,
                            door=door, cred=None, who=who, ref=None, reason="standing")
        return (seq, e.id, "access.granted", ts, m.encode(e).decode())

    batch = [ev("minheim", 1, t0 - 10)]
    batch += [ev("minheim", 1 + i, t0 + i * 0.5, "eingang" if i % 2 else "coworking") for i in range(1, N_EVENTS + 1)]
    batch += [ev("minheim", N_EVENTS + 2, t0 + N_EVENTS)]
    env.hub.service.call(lambda: store.store_events("minheim", batch, stream="export"))
    env.hub.service.call(lambda: store.store_events("wittlich", [ev("wittlich", 1, t0 + 1)], stream="export"))
    return t0, t0 + N_EVENTS * 0.5 + 1


def test_events_as_csv_every_event_in_the_range_umlauts_intact_and_a_caretaker_only_their_sites(
        env: Env, exported: tuple[float, float]) -> None:
    since, until = exported
    boss, anna = env.login("boss"), env.login("anna")
    q = f"?since={since}&until={until}&type=access.granted"
    r = boss.get(env.url + "/export/events.csv" + q, timeout=30, stream=True)
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "content-length" not in r.headers  # streamed, not built whole
    assert r.headers["content-disposition"].startswith('attachment; filename="torwart-events-')
    rows = rows_of(r.content.decode("utf-8"))
    assert list(rows[0]) == list(EVENT_COLUMNS)
    mine = [x for x in rows if x["stream"] == "export"]
    assert [int(x["seq"]) for x in mine if x["site"] == "minheim"] == list(range(2, N_EVENTS + 2))
    assert [x["site"] for x in mine].count("wittlich") == 1
    assert {x["name"] for x in mine} == {NAME} and {x["member"] for x in mine} != {""}
    first = next(x for x in mine if x["site"] == "minheim")
    assert dt.datetime.fromisoformat(first["time"]).timestamp() == pytest.approx(since + 0.5, abs=1)
    assert (first["type"], first["reason"], first["door"]) == ("access.granted", "standing", "eingang")
    # A door only.
    rows = rows_of(boss.get(env.url + "/export/events.csv" + q + "&site=minheim&door=eingang",
                            timeout=30).content.decode("utf-8"))
    assert len(rows) == N_EVENTS // 2 + N_EVENTS % 2 and {x["door"] for x in rows} == {"eingang"}
    # Excel: a byte order mark and semicolons, the same rows.
    raw = boss.get(env.url + "/export/events.csv" + q + "&site=wittlich&style=excel", timeout=30).content
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = rows_of(raw.decode("utf-8-sig"), delimiter=";")
    assert [(x["site"], x["name"]) for x in rows] == [("wittlich", NAME)]
    # A caretaker: their site's events only (however asked), and no names at a site without show_names.
    rows = rows_of(anna.get(env.url + "/export/events.csv" + q, timeout=30).content.decode("utf-8"))
    assert {x["site"] for x in rows} == {"minheim"} and len(rows) == N_EVENTS
    assert {x["name"] for x in rows} == {""} and {x["member"] for x in rows} == {""}
    # The site page's form as a browser sends it, fields left empty: every event of the site.
    page = anna.get(env.url + "/sites/minheim", timeout=10).text
    assert 'action="/export/events.csv"' in page
    form = "?site=minheim&door=&type=&since=&until=&style=plain"
    rows = rows_of(anna.get(env.url + "/export/events.csv" + form, timeout=30).content.decode("utf-8"))
    assert len([x for x in rows if x["stream"] == "export"]) == N_EVENTS + 2
    assert anna.get(env.url + "/export/events.csv?site=wittlich", timeout=10).status_code == 404
    assert anna.get(env.url + "/export/events.csv?site=minheim&door=keller", timeout=10).status_code == 400
    assert anna.get(env.url + "/export/events.csv?until=bald", timeout=10).status_code == 400
    assert anna.get(env.url + "/export/events.csv?colour=red", timeout=10).status_code == 400


def test_torwart_hub_events_csv_writes_every_event_of_the_range(env: Env, exported: tuple[float, float],
                                                                capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    since, until = exported
    cfg = str(env.county.hub_config_path)
    iso = [dt.datetime.fromtimestamp(t).isoformat() for t in (since, until)]
    assert hub_main(["events", "--csv", "--site", "minheim", "--since", iso[0], "--until", iso[1],
                     "--config", cfg]) == 0
    rows = rows_of(capsysbinary.readouterr().out.decode("utf-8"))
    mine = [x for x in rows if x["stream"] == "export"]
    assert len(mine) == N_EVENTS and {x["name"] for x in mine} == {NAME}
    assert hub_main(["events", "--csv", "--excel", "--limit", "3", "--site", "minheim", "--config", cfg]) == 0
    raw = capsysbinary.readouterr().out
    assert raw.startswith(b"\xef\xbb\xbf") and len(rows_of(raw.decode("utf-8-sig"), ";")) == 3
    exports = [r for r in audit(env) if r.act == "export.events" and r.via == "cli"]
    assert [(r.site_id, r.detail) for r in exports][-2:] == [("minheim", f"since={int(iso_ts(iso[0]))} "
                                                              f"until={int(iso_ts(iso[1]))}"), ("minheim", "limit=3")]
    # Refusals: exit 1, the reason, no CSV.
    for argv in (["events", "--door", "eingang"], ["events", "--csv", "--site", "atlantis"],
                 ["audit", "--since", "2026-02-01", "--until", "2026-01-01"], ["audit", "--limit", "0"]):
        assert hub_main([*argv, "--config", cfg]) == 1, argv
        out, err = capsysbinary.readouterr()
        assert out == b"" and err.startswith(b"error: "), argv


def test_the_retention_job_purges_audit_rows_older_than_retention_days(env: Env) -> None:
    service = env.hub.service
    days = service.cfg.hub.retention_days
    old = AuditEntry(at=time.time() - (days + 1) * 86400, who="cli:old", via="cli", act="unlock", outcome="ok")
    young = AuditEntry(at=time.time() - (days - 1) * 86400, who="cli:young", via="cli", act="unlock", outcome="ok")
    service.call(lambda: [service.store.record_audit(e) for e in (old, young)])
    service.call(service._retention)  # the job the hub's schedule runs every 6 hours
    whos = {r.who for r in audit(env)}
    assert "cli:young" in whos and "cli:old" not in whos
