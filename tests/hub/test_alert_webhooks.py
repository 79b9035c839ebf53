"""Alerts as signed webhooks over the real parts: the edge agent on mock pins, Mosquitto,
the hub (on a thread, or ``torwart-hub run`` in a subprocess that is SIGKILLed) and real
HTTP receivers on free ports that check each request's signature with the hub's own
verification (``testkit.webhook_sink``). Delivered once per opening and resolution; a
receiver that is down gets it when it returns; a hub killed before delivery delivers it
once after its restart; a receiver that refuses the signature leaves it failing, shown by
the store's query for the dashboard. Plus the ``[[alerts.webhooks]]`` config's refusals."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import config
from hub.__main__ import main as hub_main
from hub.alerts.webhooks import DELIVERY_HEADER, EVENT_HEADER
from hub.store import AlertMail
from testkit.county import County, HubThread
from testkit.site import SiteFiles
from testkit.smtpsink import SmtpSink
from testkit.util import wait_for
from testkit.webhook_sink import WebhookSink

from .test_alerts import ALERTS
from .test_alerts_live import (  # noqa: F401
    _online,
    _store,
    _users,
    _with_alerts,
    county_fixture,
    kill_hub_before_delivery,
    minheim_fixture,
    smtp_fixture,
)
from .test_hub_config import refused, write_hub_config


def _secret_file(path: Path, secret: bytes) -> str:
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(name="hook")
def hook_fixture(county: County) -> Iterator[WebhookSink]:
    """A receiver (not started) whose secret the county's hub is configured with."""
    secret = secrets.token_hex(24).encode()
    with WebhookSink(secret) as sink:
        yield sink


def _configure(county: County, smtp: SmtpSink, *sinks: WebhookSink, wrong: WebhookSink | None = None,
               **extra: object) -> None:
    """Alerts by mail and to ``sinks`` (with their secrets) and ``wrong`` (with another one)."""
    hooks = [{"url": s.url(), "secret_file": _secret_file(county.dir / f"hook-{s.port}.secret", s.secret)}
             for s in sinks]
    if wrong is not None:
        hooks.append({"url": wrong.url(), "secret_file": _secret_file(county.dir / "wrong.secret",
                                                                      secrets.token_hex(24).encode())})
    _with_alerts(county, smtp, webhooks=hooks, **extra)
    _users(county)


def _hooks(county: County) -> list[AlertMail]:
    with _store(county) as store:
        return [x for x in store.alert_mails() if x.channel == "webhook"]


def test_a_forced_door_is_posted_signed_once_when_it_opens_and_once_when_it_closes(
        county: County, smtp: SmtpSink, minheim: SiteFiles, hook: WebhookSink) -> None:
    # A second receiver knows another secret: it refuses every request, which stays failing.
    wrong = WebhookSink(secrets.token_hex(24).encode())
    _configure(county, smtp, hook, wrong=wrong)
    hook.start()
    wrong.start()
    smtp.start()
    try:
        with HubThread(county):
            minheim.start(doors=True)
            wait_for(lambda: _online(county, "minheim"), 30, what="minheim online at the hub")
            minheim.act("open eingang")  # nobody badged: forced open
            wait_for(lambda: len(hook.deliveries()) >= 1, 5, what="the alert's webhook")
            minheim.act("close eingang")
            wait_for(lambda: len(hook.deliveries()) >= 2, 10, what="the resolution's webhook")
            wait_for(lambda: len(wrong.refused) >= 2, 10, what="the other receiver's refusals")
            wait_for(lambda: len(smtp.messages()) >= 4, 10, what="the e-mails, as without webhooks")
            with _store(county) as store:
                failing = store.failing_alert_deliveries()
        opened, resolved = (d.doc for d in hook.deliveries()[:2])
        assert len(hook.deliveries()) == 2 and hook.refused == []
        assert opened["event"] == "alert.opened" and resolved["event"] == "alert.resolved"
        for doc in (opened, resolved):
            assert (doc["site"], doc["site_name"], doc["kind"], doc["subject"]) == (
                "minheim", "Site minheim", "door_forced", "eingang")
            assert doc["link"] == "https://torwart.example.org/sites/minheim"
            assert dt.datetime.fromisoformat(doc["at"]).timestamp() == pytest.approx(doc["ts"], abs=1)
        assert opened["alert_id"] == resolved["alert_id"] and opened["delivery"] != resolved["delivery"]
        first = hook.deliveries()[0]
        assert first.path == "/hook" and first.headers[EVENT_HEADER] == "alert.opened"
        assert first.headers[DELIVERY_HEADER] == str(opened["delivery"])
        mine = {x.recipient: x for x in _hooks(county) if x.state == "sent"}
        assert set(mine) == {hook.url()}
        assert {x.recipient for x in failing} == {wrong.url()} and len(failing) == 2
        assert all(x.last_error == "NotDelivered: HTTP 401 Unauthorized" and x.state == "pending" for x in failing)
        assert all("does not match" in why for why in wrong.refused)
    finally:
        wrong.stop()


def test_a_receiver_that_is_down_gets_the_alert_when_it_returns(
        county: County, smtp: SmtpSink, minheim: SiteFiles, hook: WebhookSink) -> None:
    _configure(county, smtp, hook)
    with HubThread(county):
        minheim.start(doors=True)
        wait_for(lambda: _online(county, "minheim"), 30, what="minheim online at the hub")
        minheim.act("open eingang")
        wait_for(lambda: (hs := _hooks(county)) and all(x.attempts >= 2 for x in hs), 20,
                 what="the webhook tried twice while its receiver is down")
        assert all(x.state == "pending" and "ConnectionRefusedError" in (x.last_error or "") for x in _hooks(county))
        hook.start()  # the receiver is back
        wait_for(lambda: len(hook.deliveries()) >= 1 and all(x.state == "sent" for x in _hooks(county)), 10,
                 what="the webhook delivered")
    assert [d.doc["event"] for d in hook.deliveries()] == ["alert.opened"]


def test_a_hub_killed_before_delivery_posts_the_alert_once_after_its_restart(
        county: County, smtp: SmtpSink, minheim: SiteFiles, hook: WebhookSink) -> None:
    _configure(county, smtp, hook, timeout_seconds=2.0)  # a short lease (2 x timeout + 10 s)
    kill_hub_before_delivery(
        county, minheim,
        queued=lambda: bool((hs := _hooks(county)) and all(x.attempts >= 1 and x.state == "pending" for x in hs)),
        receiver_up=hook.start, delivered=lambda: bool((hs := _hooks(county)) and all(x.state == "sent" for x in hs)))
    assert [d.doc["event"] for d in hook.deliveries()] == ["alert.opened"]


HOOK = '[[alerts.webhooks]]\nurl = "https://county.example/torwart"\nsecret_file = "secrets/hook"\n'


def test_a_webhook_secret_readable_by_others_and_a_url_given_twice_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secrets" / "hook"
    path = write_hub_config(tmp_path, extra=ALERTS + HOOK)
    secret.write_text(secrets.token_hex(16))
    os.chmod(secret, 0o600)
    cfg = config.load(path, check_files=True)
    assert cfg.alerts is not None and [(w.url, w.secret_file) for w in cfg.alerts.webhooks] == [
        ("https://county.example/torwart", str(secret))]
    os.chmod(secret, 0o644)
    err = refused(path)
    assert err.key == "alerts.webhooks[0].secret_file" and "chmod 600" in str(err)
    assert hub_main(["run", "--config", str(path)]) == 2  # refused before anything starts
    assert "alerts.webhooks[0].secret_file" in capsys.readouterr().err
    os.chmod(secret, 0o600)
    assert refused(write_hub_config(tmp_path, extra=ALERTS + HOOK + HOOK)).key == "alerts.webhooks[1].url"
    bad = HOOK.replace("https://county.example/torwart", "ftp://county.example")
    assert refused(write_hub_config(tmp_path, extra=ALERTS + bad)).key == "alerts.webhooks[0].url"
    assert refused(write_hub_config(tmp_path, extra=ALERTS + HOOK.replace("secret_file", "secret"))).key \
        == "alerts.webhooks[0].secret"
