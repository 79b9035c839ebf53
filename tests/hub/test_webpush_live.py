"""Web Push over the real parts: a caretaker's browser (the test: its own P-256 keys and
auth secret) subscribes through the dashboard's API; a door forced at the site (the real
agent on mock pins, testkit.simsite) reaches a local push service, where the browser's
side decrypts it with http_ece (an independent RFC 8291 implementation) and reads the
alert; a push service that says the subscription has ended makes the hub forget it. And
the API's refusals: a subscription that cannot work, the admin token, another user's
browser, the eleventh browser, a hub without a VAPID key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import requests
import tomli_w

from hub import config as hub_config
from hub.alerts.pusher import vapid_key_path
from hub.alerts.webpush import Vapid, b64url
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.dashboard import add_user, login
from testkit.smtpsink import SmtpSink
from testkit.util import wait_for
from tests.hub.test_webpush import Browser, PushService, check_vapid


def _county(tmp_path: Path, broker: Mosquitto, platform: BookingPlatform, smtp: SmtpSink) -> County:
    county = make_county(tmp_path, broker, platform, ("minheim", "wehlen"))
    doc = tomllib.loads(county.hub_config_path.read_text())
    doc["alerts"] = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False,
                     "from": "torwart@example.org", "dashboard_url": "https://torwart.example.org/",
                     "retry_first_seconds": 0.2, "retry_max_seconds": 1.0,
                     "push_services": ["127.0.0.1", "push.example"]}
    county.hub_config_path.write_text(tomli_w.dumps(doc))
    Vapid.create(vapid_key_path(hub_config.load(county.hub_config_path)))
    return county


def _subscribe(session: requests.Session, url: str, browser: Browser) -> requests.Response:
    sub = browser.subscription
    return session.post(url + "/api/v1/me/push", timeout=10,
                        json={"endpoint": sub.endpoint, "expirationTime": None,
                              "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})


def test_a_forced_door_pops_up_on_the_caretakers_phone_and_an_ended_subscription_is_forgotten(
        tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> None:
    with SmtpSink() as smtp, PushService() as push:
        smtp.start()
        county = _county(tmp_path, broker, booking_platform, smtp)
        anna = add_user(county, "anna", "caretaker", "minheim")
        ben = add_user(county, "ben", "caretaker", "wehlen")
        with HubThread(county):
            site = county.sites["minheim"]
            site.start(doors=True)
            try:
                s = login(county.http_url, "anna", anna)
                state = s.get(county.http_url + "/api/v1/me/push", timeout=10).json()
                key = Vapid.load(vapid_key_path(hub_config.load(county.hub_config_path)), "mailto:x").public_key
                assert state == {"public_key": key, "browsers": []}
                phone = Browser.subscribe(push.origin + "/wpush/anna-phone")
                r = _subscribe(s, county.http_url, phone)
                assert r.status_code == 201 and r.json()["browsers"][0]["host"] == push.origin.split("//")[1]
                r = s.post(county.http_url + "/api/v1/me/alerts", json={"channels": ["push"]}, timeout=10)
                assert r.status_code == 200 and r.json()["channels"] == ["push"]
                # Ben (the other site's caretaker) has a browser too: he hears nothing of minheim.
                b = login(county.http_url, "ben", ben)
                assert _subscribe(b, county.http_url, Browser.subscribe(push.origin + "/wpush/ben")).status_code == 201
                b.post(county.http_url + "/api/v1/me/alerts", json={"channels": ["push"]}, timeout=10)

                wait_for(lambda: _online(county), 30, what="minheim online at the hub")
                site.act("open eingang")  # nobody badged: forced open
                wait_for(lambda: len(push.got) >= 1, 10, what="the push message")
                [(path, headers, body)] = push.got
                assert path == "/wpush/anna-phone" and headers["urgency"] == "high"
                check_vapid(headers, push.origin, key)
                note = json.loads(phone.decrypt(body))
                assert "eingang" in note["title"] and note["url"] == "https://torwart.example.org/sites/minheim"
                assert note["urgent"] is True and note["tag"] == "torwart-minheim-door_forced-eingang"

                push.answers.append(410)  # the phone's browser dropped the subscription meanwhile
                site.act("close eingang")
                wait_for(lambda: len(push.got) >= 2, 10, what="the all-clear, refused by the push service")
                wait_for(lambda: s.get(county.http_url + "/api/v1/me/push", timeout=10).json()["browsers"] == [],
                         10, what="the ended subscription forgotten")
                assert [p for p, _, _ in push.got] == ["/wpush/anna-phone"] * 2  # never Ben's
                assert smtp.messages() == []  # anna chose push only; ben has no e-mail address
            finally:
                site.stop()


def _online(county: County) -> bool:
    with open_store(county.store_url) as store:
        st = store.site_state("minheim")
        return st is not None and st.online


def test_the_push_api_refuses_what_cannot_work_and_serves_the_service_worker(
        tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform) -> None:
    with SmtpSink() as smtp:
        county = _county(tmp_path, broker, booking_platform, smtp)
        anna, ben = add_user(county, "anna", "caretaker", "minheim"), add_user(county, "ben", "admin")
        url = county.http_url
        with HubThread(county):
            sw = requests.get(url + "/sw.js", timeout=10)  # no login: a browser fetches it on its own
            assert sw.status_code == 200 and "showNotification" in sw.text
            assert sw.headers["service-worker-allowed"] == "/" and "javascript" in sw.headers["content-type"]
            s, b = login(url, "anna", anna), login(url, "ben", ben)
            good = Browser.subscribe("https://push.example/send/1").subscription
            for keys, why in (({"p256dh": b64url(b"\x04" + b"\x00" * 64), "auth": good.auth}, "not a point"),
                              ({"p256dh": good.p256dh, "auth": b64url(b"x" * 20)}, "16 bytes")):
                r = s.post(url + "/api/v1/me/push", json={"endpoint": good.endpoint, "keys": keys}, timeout=10)
                assert r.status_code == 400 and why in r.json()["error"]
            keys = {"p256dh": good.p256dh, "auth": good.auth}
            r = s.post(url + "/api/v1/me/push", json={"endpoint": "ftp://x/y", "keys": keys}, timeout=10)
            assert r.status_code == 400
            # Only the configured push services: nothing aims the hub at its own network.
            for inside in ("http://169.254.169.254/latest/meta-data", "https://localhost:9/x",
                           "https://push.example.evil.org/x"):
                r = _subscribe(s, url, Browser.subscribe(inside))
                assert r.status_code == 400 and "push_services" in r.json()["error"], inside
            token = {"Authorization": f"Bearer {county.admin_token}"}
            assert requests.get(url + "/api/v1/me/push", headers=token, timeout=10).status_code == 403
            for i in range(10):
                assert _subscribe(s, url, Browser.subscribe(f"https://push.example/send/{i}")).status_code == 201
            r = _subscribe(s, url, Browser.subscribe("https://push.example/send/eleven"))
            assert r.status_code == 409 and "at most 10" in r.json()["error"]
            assert _subscribe(s, url, Browser.subscribe("https://push.example/send/3")).status_code == 201  # again
            # Ben may neither take over nor remove Anna's browser; Anna may remove it.
            r = _subscribe(b, url, Browser.subscribe("https://push.example/send/3"))
            assert r.status_code == 409 and "another user" in r.json()["error"]
            gone = {"endpoint": "https://push.example/send/3"}
            assert b.delete(url + "/api/v1/me/push", json=gone, timeout=10).status_code == 404
            r = s.delete(url + "/api/v1/me/push", json=gone, timeout=10)
            assert r.status_code == 200 and len(r.json()["browsers"]) == 9
            # Without the hub's VAPID key there is nothing to subscribe to.
            vapid = vapid_key_path(hub_config.load(county.hub_config_path))
            vapid.rename(vapid.with_suffix(".off"))
            assert s.get(url + "/api/v1/me/push", timeout=10).json()["public_key"] is None
            assert _subscribe(s, url, Browser.subscribe("https://push.example/send/x")).status_code == 409
            page = s.get(url + "/settings/alerts", timeout=10).text
            assert 'id="push-enable"' in page and "/static/push.js" in page and 'value="push"' in page

