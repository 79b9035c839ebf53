"""Alerts over the real parts, for the acknowledgement, reminder and escalation rules and
who hears what: site agents on MockFactory pins (``testkit.simsite``), Mosquitto, the hub
on a thread and a real SMTP server (aiosmtpd). Durations are seconds here
(``offline_minutes = 0.02`` is 1.2 s)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from hub.alerts.texts import LOCAL
from testkit.county import County, HubThread
from testkit.demo_county import hub_cli
from testkit.site import SiteFiles
from testkit.smtpsink import SmtpSink
from testkit.util import wait_for
from tests.hub.test_alerts_live import (
    ADMIN,
    CARE_M,
    CARE_W,
    _mails,
    _online,
    _store,
    _to,
    _users,
    _with_alerts,
    county_fixture,  # noqa: F401 (fixtures)
    minheim_fixture,  # noqa: F401
    smtp_fixture,  # noqa: F401
)

UNKNOWN_CARD = "em4100:0AFFFFFFFF"


@pytest.fixture
def wehlen(county: County) -> Iterator[SiteFiles]:
    site = county.sites["wehlen"]
    yield site
    site.stop()


def _got(smtp: SmtpSink) -> list[tuple[str, str]]:
    """(recipient, subject) of every message the server took, in order (a long subject's
    header folding undone)."""
    return [(r, " ".join(str(msg["Subject"]).split())) for rcpts, msg in smtp.messages() for r in rcpts]


def test_a_site_offline_is_alerted_escalated_when_nobody_acknowledges_and_cleared_when_it_returns(
    county: County, smtp: SmtpSink, minheim: SiteFiles
) -> None:
    _with_alerts(county, smtp, offline_minutes=0.02, escalate_minutes=0.05, remind_minutes=0.05, max_reminders=1)
    _users(county)
    smtp.start()
    with HubThread(county):
        minheim.start(doors=True)
        wait_for(lambda: _online(county, "minheim"), 30, what="minheim online")
        minheim.stop()  # its Last Will: offline
        wait_for(lambda: len(smtp.messages()) >= 2, 10, what="the offline alert's e-mails")
        assert sorted(r for r, _ in _got(smtp)) == [ADMIN, CARE_M]
        assert all("Standort offline" in s and s.startswith("[Torwart] Alarm:") for _, s in _got(smtp))
        # Nobody acknowledges: after escalate_minutes the admins get it as an escalation and
        # the caretaker a reminder.
        wait_for(lambda: len(smtp.messages()) >= 4, 15, what="the escalation and the reminder")
        later = _got(smtp)[2:]
        assert sorted(later) == sorted([(ADMIN, "[Torwart] Eskalation: Site minheim: Standort offline"),
                                        (CARE_M, "[Torwart] Erinnerung: Site minheim: Standort offline")])
        with _store(county) as store:
            [alert] = store.open_alerts("minheim")
            assert alert.escalated_at is not None and alert.reminders == 1 and alert.acked_at is None
        minheim.start(doors=True)
        wait_for(lambda: len(smtp.messages()) >= 6, 30, what="the clear messages")
        cleared = _got(smtp)[4:]
        assert sorted(r for r, _ in cleared) == [ADMIN, CARE_M]
        assert all(s == "[Torwart] Behoben: Site minheim: Standort offline" for _, s in cleared)
        with _store(county) as store:
            assert store.open_alerts("minheim") == []
        assert CARE_W not in _to(smtp)  # the other site's caretaker heard nothing
        assert [x.what for x in _mails(county)].count("escalated") == 1  # max_reminders and one escalation


def test_two_caretakers_of_two_sites_each_hear_only_their_own_site(
    county: County, smtp: SmtpSink, minheim: SiteFiles, wehlen: SiteFiles
) -> None:
    _with_alerts(county, smtp)
    _users(county)
    smtp.start()
    with HubThread(county):
        minheim.start(doors=True)
        wehlen.start(doors=True)
        wait_for(lambda: _online(county, "minheim") and _online(county, "wehlen"), 30, what="both sites online")
        minheim.act("open eingang")
        wehlen.act("open coworking")
        wait_for(lambda: len(smtp.messages()) >= 4, 10, what="both alerts' e-mails")
        got = _got(smtp)
        assert sorted(s for r, s in got if r == CARE_M) == ["[Torwart] Alarm: Site minheim: Tür eingang aufgebrochen"]
        assert sorted(s for r, s in got if r == CARE_W) == ["[Torwart] Alarm: Site wehlen: Tür coworking aufgebrochen"]
        assert sorted(s for r, s in got if r == ADMIN) == ["[Torwart] Alarm: Site minheim: Tür eingang aufgebrochen",
                                                           "[Torwart] Alarm: Site wehlen: Tür coworking aufgebrochen"]


def test_quiet_hours_hold_back_a_non_urgent_alert_but_never_an_urgent_one(
    county: County, smtp: SmtpSink, minheim: SiteFiles
) -> None:
    # Repeated refused cards are not urgent here, a forced door is.
    _with_alerts(county, smtp, urgent=["door_forced"], denials=3, denials_minutes=5)
    _users(county)
    now = dt.datetime.now(LOCAL)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(hours=2)
    hub_cli(county, "users", "alerts", "care-m", "--quiet", f"{start:%H:%M}-{end:%H:%M}", "--lang", "en")
    smtp.start()
    with HubThread(county):
        minheim.start(doors=True)
        wait_for(lambda: _online(county, "minheim"), 30, what="minheim online")
        for _ in range(3):
            county.sites["minheim"].badge("eingang-sim", UNKNOWN_CARD)
        wait_for(lambda: len([x for x in _mails(county) if "abgewiesene" in x.mail_subject or "refused" in
                              x.mail_subject]) == 2 and len(smtp.messages()) >= 1, 20,
                 what="the denials alert queued and the admin's e-mail sent")
        minheim.act("open eingang")
        wait_for(lambda: len(smtp.messages()) >= 3, 10, what="the forced door's e-mails")
        got = _got(smtp)
        assert (CARE_M, "[Torwart] Alert: Site minheim: door eingang forced open") in got  # at once, in English
        assert (ADMIN, "[Torwart] Alarm: Site minheim: Wiederholt abgewiesene Karten an Tür eingang") in got
        assert not any(r == CARE_M and "refused" in s for r, s in got)  # held back until the quiet hours end
        held = [x for x in _mails(county) if x.recipient == CARE_M and "refused" in x.mail_subject]
        assert len(held) == 1 and held[0].state == "pending" and held[0].attempts == 0
        assert abs(held[0].next_try - end.replace(second=0, microsecond=0).timestamp()) < 61


def test_a_lockdown_is_reported_when_it_starts_and_when_it_ends(
    county: County, smtp: SmtpSink, minheim: SiteFiles
) -> None:
    _with_alerts(county, smtp)
    _users(county)
    smtp.start()
    with HubThread(county) as hub:
        svc = hub.service
        minheim.start(doors=True)
        wait_for(lambda: _online(county, "minheim"), 30, what="minheim online")
        svc.call(lambda: svc.hub.send_command("minheim", "lockdown"))
        wait_for(lambda: len(smtp.messages()) >= 2, 15, what="the lockdown's e-mails")
        started = "[Torwart] Sperre begonnen: Site minheim: alle Türen gesperrt (Lockdown)"
        assert sorted(_got(smtp)) == [(ADMIN, started), (CARE_M, started)]
        svc.call(lambda: svc.hub.send_command("minheim", "lockdown_end"))
        wait_for(lambda: len(smtp.messages()) >= 4, 15, what="the end of the lockdown's e-mails")
        ended = "[Torwart] Sperre beendet: Site minheim: alle Türen gesperrt (Lockdown)"
        assert sorted(_got(smtp)[2:]) == [(ADMIN, ended), (CARE_M, ended)]
