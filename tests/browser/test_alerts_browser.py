"""Acknowledging an alert in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright) stops its reminders: a site agent on MockFactory pins has its door forced, the
caretaker's site page shows the alert live (no reload), reminders reach a real SMTP server
(aiosmtpd) every few seconds, the caretaker taps "Bestätigen", and from then on the hub
reminds about it no more, while an alert nobody acknowledged still is. A screenshot goes
to ``test-output/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.dashboard import add_user
from testkit.demo_county import hub_cli
from testkit.smtpsink import SmtpSink
from testkit.util import wait_for
from tests.browser.test_dashboard_browser import ARGS, CHROMIUM, OUT, PHONE, expect, log_in, playwright_sync
from tests.hub.test_alerts_live import _with_alerts

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(scripts/setup --dev installs it)")

ANNA = "anna@example.org"


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    return make_county(tmp_path, broker, booking_platform, ("minheim", "wittlich"))


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s.start()


def _reminders(county: County, alert_id: int) -> int:
    with open_store(county.hub_config_path.parent / "data" / "hub.sqlite3") as store:
        return sum(1 for x in store.alert_mails(alert_id) if x.what == "reminder")


def test_acknowledging_in_the_browser_stops_the_reminders(county: County, smtp: SmtpSink, browser: object) -> None:
    _with_alerts(county, smtp, remind_minutes=0.05, max_reminders=100, escalate_minutes=60)
    password = add_user(county, "anna", "caretaker", "minheim")
    hub_cli(county, "users", "alerts", "anna", "--email", ANNA)
    site = county.sites["minheim"]
    url = county.http_url
    with HubThread(county) as hub:
        svc = hub.service
        site.start(doors=True)
        try:
            wait_for(lambda: (st := svc.call(lambda: svc.store.site_state("minheim"))) is not None and st.online,
                     30, what="minheim online")
            page = log_in(browser, url, "anna", password, PHONE)
            page.goto(url + "/sites/minheim")  # type: ignore[attr-defined]
            expect(page.locator("body")).to_have_attribute("data-live-state", "open")
            page.evaluate("window.__sameDocument = 42")  # type: ignore[attr-defined]

            site.act("open eingang")  # nobody badged: forced open
            alert = page.locator("#site-minheim li.alert.is-open", has_text="Tür eingang aufgebrochen")  # type: ignore[attr-defined]
            expect(alert).to_be_visible(timeout=5000)
            assert page.evaluate("window.__sameDocument") == 42  # type: ignore[attr-defined]  # live, no reload
            alert_id = int(alert.get_attribute("data-alert"))

            def reminded() -> bool:
                return any(r == ANNA and "Erinnerung" in str(msg["Subject"])
                           for rcpts, msg in smtp.messages() for r in rcpts)

            wait_for(reminded, 15, what="a reminder e-mail at the SMTP server")
            page.screenshot(path=str(OUT / "dashboard-alert-phone.png"), full_page=True)  # type: ignore[attr-defined]

            alert.locator("button.ack-button").click()  # one tap
            acked = page.locator(f"#site-minheim li.alert[data-alert='{alert_id}']")  # type: ignore[attr-defined]
            expect(acked).to_contain_text("Bestätigt von anna", timeout=5000)
            expect(acked.locator("button.ack-button")).to_have_count(0)
            with open_store(county.hub_config_path.parent / "data" / "hub.sqlite3") as store:
                row = store.get_alert(alert_id)
                assert row is not None and row.acked_by == "anna" and row.resolved_at is None
            before = _reminders(county, alert_id)

            # An hour later by the alerter's clock: the acknowledged alert gets no reminder, an
            # alert opened meanwhile that nobody acknowledged does.
            alerter = svc.alerter
            assert alerter is not None
            from hub.alerts.rules import Decision

            control = svc.call(lambda: alerter.apply("minheim", Decision("open", "reader_tamper", "eingang-sim",
                                                                        time.time())))
            assert control is not None
            svc.call(lambda: alerter.remind(time.time() + 3600))
            assert _reminders(county, control) >= 1  # (the schedule may have added its own since)
            assert _reminders(county, alert_id) == before
        finally:
            site.stop()
