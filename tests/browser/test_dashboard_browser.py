"""The caretakers' dashboard in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright; never a downloaded browser): log in, watch a badge at a live site change the
number on the page without a reload, stay out of another site, and see an action without
the CSRF token refused. Screenshots (phone and desktop) go to ``test-output/``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.dashboard import add_user
from testkit.util import wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
CARD = "em4100:0A00B1C2D3"
OUT = Path(__file__).resolve().parents[2] / "test-output"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(scripts/setup --dev installs it)")

playwright_sync = pytest.importorskip("playwright.sync_api", reason="needs playwright (scripts/setup --dev)")
expect = playwright_sync.expect


@pytest.fixture
def county(tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> County:
    """Two sites; a caretaker ``anna`` of minheim (password in ``county.passwords``), and a
    member whose card opens every door of minheim."""
    county = make_county(tmp_path, broker, booking_platform, ("minheim", "wittlich"))
    county.passwords = {"anna": add_user(county, "anna", "caretaker", "minheim")}  # type: ignore[attr-defined]
    with open_store(county.store_url) as store:
        store.add_member("m-1", "Anna Beispiel")
        store.add_credential("m-1", CARD)
        store.add_grant("m-1", "minheim", label="Hausmeisterei")
    return county


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def log_in(browser: object, url: str, name: str, password: str, viewport: dict[str, int]) -> object:
    ctx = browser.new_context(viewport=viewport, locale="de-DE", timezone_id="Europe/Berlin")  # type: ignore[attr-defined]
    page = ctx.new_page()
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    expect(page).to_have_url(url + "/")
    return page


def test_a_caretaker_sees_a_badge_arrive_live_and_nothing_of_another_site(
    county: County, browser: object
) -> None:
    OUT.mkdir(exist_ok=True)
    password = county.passwords["anna"]  # type: ignore[attr-defined]
    site = county.sites["minheim"]
    url = county.http_url
    with HubThread(county) as hub:
        svc = hub.service
        site.start()
        try:
            def ready() -> bool:
                st = svc.call(lambda: svc.store.site_state("minheim"))
                cs = svc.call(lambda: svc.store.cache_state("minheim"))
                return st is not None and st.online and cs is not None and st.cache_version == cs.version

            wait_for(ready, 30, what="the site online with the latest cache")
            page = log_in(browser, url, "anna", password, PHONE)
            # The county: minheim only.
            expect(page.locator("#site-minheim")).to_be_visible()
            expect(page.locator("#site-wittlich")).to_have_count(0)
            assert "Site wittlich" not in page.content()  # type: ignore[attr-defined]
            page.screenshot(path=str(OUT / "dashboard-county-phone.png"), full_page=True)  # type: ignore[attr-defined]

            page.click("#site-minheim h2 a")  # type: ignore[attr-defined]
            expect(page).to_have_url(url + "/sites/minheim")
            expect(page.locator("body")).to_have_attribute("data-live-state", "open")
            count = page.locator("#site-minheim .room[data-room=coworking] .present")  # type: ignore[attr-defined]
            expect(count).to_have_text("0")
            page.evaluate("window.__sameDocument = 42")  # type: ignore[attr-defined]

            t0 = time.monotonic()
            site.badge("coworking-sim", CARD)
            expect(count).to_have_text("1", timeout=2000)
            took = time.monotonic() - t0
            print(f"badge at the room door → number changed on the page: {took * 1000:.0f} ms")
            assert took < 2.0
            assert page.evaluate("window.__sameDocument") == 42  # type: ignore[attr-defined]  # no reload
            expect(page.locator("#site-minheim .events")).to_contain_text("Angekommen")
            page.screenshot(path=str(OUT / "dashboard-site-phone.png"), full_page=True)  # type: ignore[attr-defined]
            # Nothing sticks out sideways on a phone.
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # type: ignore[attr-defined]

            # An action without the CSRF token is refused; through the page's confirm step it goes.
            status = page.evaluate("""async () => (await fetch('/api/v1/sites/minheim/commands', {
                method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({action: 'unlock', door: 'eingang'})})).status""")  # type: ignore[attr-defined]
            assert status == 403
            unlock = page.locator("form.action", has_text="Tür öffnen")  # type: ignore[attr-defined]
            unlock.locator("select[name=door]").select_option("eingang")
            unlock.locator("button[type=submit]").click()
            dialog = page.locator("dialog#confirm")  # type: ignore[attr-defined]
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text("eingang")
            dialog.locator("button[value=ok]").click()
            expect(unlock.locator(".result")).to_contain_text("Gesendet")
            expect(page.locator("#site-minheim .events")).to_contain_text("Fernbefehl", timeout=10000)

            # Another site's page does not exist for this caretaker.
            response = page.goto(url + "/sites/wittlich")  # type: ignore[attr-defined]
            assert response is not None and response.status == 404

            desk = log_in(browser, url, "anna", password, DESKTOP)
            desk.screenshot(path=str(OUT / "dashboard-county-desktop.png"), full_page=True)  # type: ignore[attr-defined]
            desk.goto(url + "/sites/minheim?lang=en")  # type: ignore[attr-defined]
            expect(desk.locator("h2", has_text="Rooms")).to_be_visible()  # type: ignore[attr-defined]
            desk.screenshot(path=str(OUT / "dashboard-site-desktop.png"), full_page=True)  # type: ignore[attr-defined]
        finally:
            site.stop()
