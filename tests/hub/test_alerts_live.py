"""Alerts by e-mail over the real parts: the edge agent on mock pins (``testkit.simsite``,
its door contact moved through the control FIFO: ``SiteFiles.start(doors=True)``,
``act``), Mosquitto, the hub (on a thread, or as ``torwart-hub run`` in a subprocess where
it is SIGKILLed) and a real SMTP server (aiosmtpd, ``testkit.smtpsink``)."""

from __future__ import annotations

import secrets
import signal
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import tomli_w

from hub.alerts import rules
from hub.store import AlertMail, Store, open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.demo_county import hub_cli, hub_command
from testkit.site import SiteFiles
from testkit.smtpsink import SmtpSink
from testkit.util import stop_process, wait_for
from wire import messages as m

ADMIN, CARE_M, CARE_W = "admin@example.org", "hausmeister.minheim@example.org", "hausmeister.wehlen@example.org"


def _with_alerts(county: County, smtp: SmtpSink, **extra: object) -> None:
    doc = tomllib.loads(county.hub_config_path.read_text())
    doc["alerts"] = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False,
                     "from": "torwart@example.org", "dashboard_url": "https://torwart.example.org/",
                     "retry_first_seconds": 0.2, "retry_max_seconds": 1.0, **extra}
    county.hub_config_path.write_text(tomli_w.dumps(doc))


def _users(county: County) -> None:
    """Through the CLI: an admin and a caretaker of each site with addresses, an admin without."""
    pw = county.dir / "pw"
    pw.write_text(secrets.token_urlsafe(18))
    pw.chmod(0o600)
    for name, role, sites, email in (("admin", "admin", None, ADMIN), ("admin2", "admin", None, None),
                                     ("care-m", "caretaker", "minheim", CARE_M),
                                     ("care-w", "caretaker", "wehlen", CARE_W)):
        args = ["users", "add", name, "--role", role, "--password-file", str(pw)]
        args += ["--sites", sites] if sites else []
        args += ["--email", email] if email else []
        hub_cli(county, *args)


@pytest.fixture(name="county")
def county_fixture(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim", "wehlen"))


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture(name="minheim")
def minheim_fixture(county: County) -> Iterator[SiteFiles]:
    """The minheim agent as ``testkit.simsite`` (``start(doors=True)``; ``act`` moves its doors)."""
    site = county.sites["minheim"]
    yield site
    site.stop()


@contextmanager
def _store(county: County) -> Iterator[Store]:
    store = open_store(county.store_url)
    try:
        yield store
    finally:
        store.close()


def _mails(county: County) -> list[AlertMail]:
    with _store(county) as store:
        return store.alert_mails()


def _all_sent(county: County) -> bool:
    """Every queued message marked sent (which the hub does after the server took it)."""
    ms = _mails(county)
    return bool(ms) and all(x.state == "sent" for x in ms)


def _online(county: County, site: str) -> bool:
    with _store(county) as store:
        st = store.site_state(site)
        return st is not None and st.online


def _to(smtp: SmtpSink) -> list[str]:
    return sorted(r for rcpts, _ in smtp.messages() for r in rcpts)


def test_a_forced_door_mails_its_caretaker_and_the_admins_once_and_once_more_when_it_closes(
    county: County, smtp: SmtpSink, minheim: SiteFiles
) -> None:
    _with_alerts(county, smtp)
    _users(county)
    smtp.start()
    with HubThread(county) as hub:
        minheim.start(doors=True)
        wait_for(lambda: _online(county, "minheim"), 30, what="minheim online at the hub")
        minheim.act("open eingang")  # nobody badged: forced open
        wait_for(lambda: len(smtp.messages()) >= 2, 5, what="the alert's two e-mails")
        assert _to(smtp) == [ADMIN, CARE_M]  # not the other site's caretaker, not the admin without address
        for _, msg in smtp.messages():
            assert msg["Subject"] == "[Torwart] Alarm: Site minheim: Tür eingang aufgebrochen"
            body = msg.get_content()
            assert "https://torwart.example.org/sites/minheim" in body and "UTC" in body
        # The same door forced again while its alert is open: nothing new is queued.
        again = m.DoorForcedOpen(id="again", site="minheim", seq=10**6, boot="b", ts=1.0, clock_synced=True,
                                 door="eingang")
        alerter = hub.service.alerter
        assert alerter is not None
        assert hub.service.call(lambda: [alerter.apply("minheim", d) for d in rules.from_event(again)]) == [None]
        minheim.act("close eingang")
        wait_for(lambda: len(smtp.messages()) >= 4 and _all_sent(county), 10, what="the two resolved e-mails sent")
        mails = _mails(county)
        assert [(x.what, x.recipient, x.state) for x in mails] == [
            ("opened", ADMIN, "sent"), ("opened", CARE_M, "sent"),
            ("resolved", ADMIN, "sent"), ("resolved", CARE_M, "sent")]
        assert len(smtp.messages()) == 4
        resolved = [msg for _, msg in smtp.messages()][2:]
        assert all(msg["Subject"].startswith("[Torwart] Behoben: Site minheim: Tür eingang") for msg in resolved)


def kill_hub_before_delivery(county: County, minheim: SiteFiles, *, queued: Callable[[], bool],
                             receiver_up: Callable[[], None], delivered: Callable[[], bool]) -> None:
    """The hub as a process; the site's door forced while the alert's receiver is down; once
    ``queued()`` (claimed and tried), SIGKILL the hub, start the receiver (``receiver_up``),
    start the hub again and wait for ``delivered()``."""
    log = (county.hub_config_path.parent / "hub.log").open("ab")
    run = [*hub_command(), "run", "--config", str(county.hub_config_path)]
    hub = subprocess.Popen(run, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        minheim.start(doors=True)
        minheim.act("open eingang")
        wait_for(queued, 30, what="the alert queued and tried once")
        hub.send_signal(signal.SIGKILL)
        hub.wait()
        receiver_up()
        hub = subprocess.Popen(run, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for(delivered, 30, what="the queued alert delivered by the restarted hub")
    finally:
        stop_process(hub, 15)
        log.close()


def test_a_hub_killed_before_delivery_sends_each_message_once_after_its_restart(
    county: County, smtp: SmtpSink, minheim: SiteFiles
) -> None:
    # The SMTP server is not started yet: nothing can be delivered. A short timeout keeps the
    # lease short (2 x timeout + 10 s): a kill between claiming and recording a try leaves the
    # messages claimed for that long.
    _with_alerts(county, smtp, timeout_seconds=2.0)
    _users(county)
    kill_hub_before_delivery(
        county, minheim,
        queued=lambda: bool((ms := _mails(county)) and all(x.attempts >= 1 and x.state == "pending" for x in ms)),
        receiver_up=smtp.start, delivered=lambda: _all_sent(county))
    assert _to(smtp) == [ADMIN, CARE_M]
    assert len({msg["Message-ID"] for _, msg in smtp.messages()}) == 2


def test_a_site_offline_too_long_is_an_alert_delivered_when_the_mail_server_returns_and_resolved_online(
    county: County, smtp: SmtpSink, minheim: SiteFiles
) -> None:
    _with_alerts(county, smtp, offline_minutes=0.02)  # 1.2 s
    _users(county)
    with HubThread(county):
        minheim.start(doors=True)
        wait_for(lambda: _online(county, "minheim"), 30, what="minheim online")
        minheim.stop()
        wait_for(lambda: (ms := _mails(county)) and all(x.attempts >= 1 for x in ms), 30,
                 what="the offline alert queued and refused (no mail server)")
        with _store(county) as store:
            assert [a.kind for a in store.open_alerts("minheim")] == ["site_offline"]
        assert all(x.state == "pending" and x.last_error for x in _mails(county))
        smtp.start()  # the server is back
        wait_for(lambda: len(smtp.messages()) >= 2, 10, what="the offline alert's e-mails")
        assert _to(smtp) == [ADMIN, CARE_M]
        assert all("Standort offline" in msg["Subject"] for _, msg in smtp.messages())
        minheim.start(doors=True)
        wait_for(lambda: len(smtp.messages()) >= 4 and _all_sent(county), 30, what="the resolved e-mails sent")
        with _store(county) as store:
            assert store.open_alerts("minheim") == []
        assert [(x.what, x.state) for x in _mails(county)] == [("opened", "sent")] * 2 + [("resolved", "sent")] * 2
