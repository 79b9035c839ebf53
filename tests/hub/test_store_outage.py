"""A PostgreSQL restart under a running hub (hub.outage): what fails meanwhile is logged as
a store outage (one WARNING line with the cause per message, not a traceback per failed
work item), the booking webhook answers 503 with Retry-After (the platform sends it
again) and applies the retry once the store is back; any other failure keeps its
traceback at ERROR."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import requests

from hub.outage import log_failure, store_outage
from hub.store.postgres import StoreUnavailable
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.chaos_attacks import sign_webhook
from testkit.county import HubThread, make_county
from testkit.postgres import Postgres
from testkit.util import wait_for


def test_an_outage_is_one_warning_line_and_a_bug_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.outage")
    log = logging.getLogger("test.outage")
    down = StoreUnavailable("cannot connect to the PostgreSQL store: the database system is shutting down")
    assert store_outage(down) and not store_outage(ValueError("x"))
    for _ in range(3):
        log_failure(log, down, "site %s: event batch failed", "s1")
    log_failure(log, ValueError("a bug"), "site %s: event batch failed", "s1")
    levels = [(r.levelno, r.exc_info is not None) for r in caplog.records]
    assert levels == [(logging.WARNING, False), (logging.DEBUG, False), (logging.DEBUG, False),
                      (logging.ERROR, True)]
    assert "site s1: event batch failed (the store is unavailable: cannot connect" in caplog.records[0].getMessage()


@pytest.mark.slow
def test_a_postgresql_restart_answers_webhooks_503_and_logs_no_tracebacks(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with Postgres() as pg:
        url = pg.url(pg.create_db("outage"), password=True)
        county = make_county(tmp_path, broker, booking_platform, store=url)
        hook = f"http://127.0.0.1:{county.http_port}/api/v1/webhooks/booking"

        def push(booking_id: str) -> requests.Response:
            now = time.time()
            body = json.dumps({"id": booking_id, "resource_id": county.resource("minheim"), "member_id": "m-1",
                               "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                               "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                               "status": "confirmed", "pin": None,
                               "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}).encode()
            headers = sign_webhook(body, county.webhook_secret, int(now))
            return requests.post(hook, data=body, headers=headers, timeout=30)

        with HubThread(county) as hub:
            assert push("bk-before").status_code == 200
            pg.stop()
            down = push("bk-during")
            assert down.status_code == 503 and down.headers["Retry-After"] == "5"
            assert "store is unavailable" in down.json()["error"]
            wait_for(lambda: any("the store is unavailable" in r.getMessage() and r.name != "hub.web"
                                 for r in caplog.records), 20, what="a failure of the running hub's work")
            pg.start()
            wait_for(lambda: push("bk-during").status_code == 200, 30, interval=0.5, what="the retry applied")
            assert hub.service.call(lambda: hub.service.store.get_booking("bk-during")) is not None
    outage = [r for r in caplog.records if r.exc_info and store_outage(r.exc_info[1])]
    assert outage == []  # no traceback for what the outage caused
    assert any(r.levelno == logging.WARNING and "webhook for booking bk-during not applied; answered 503" in
               r.getMessage() for r in caplog.records)
