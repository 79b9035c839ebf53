"""Alerts by e-mail, piece by piece: the rules (pure), the store's alert queue (once per
open alert, claimed, retried, sent), the mailer against a real SMTP server that refuses
and then takes a message, the ``[alerts]`` config and ``users add --email``."""

from __future__ import annotations

import os
import secrets
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hub import config
from hub.__main__ import main as hub_main
from hub.alerts import rules
from hub.alerts.mailer import Mailer
from hub.alerts.texts import compose
from hub.store import OutMail, Store, open_store
from testkit.smtpsink import Keep, SmtpSink
from testkit.util import wait_for
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401
from tests.hub.test_dashboard_users import SITES_TOML, password_file
from tests.hub.test_hub_config import refused, write_hub_config
from wire import messages as m

HEAD: dict[str, Any] = {"site": "minheim", "seq": 1, "boot": "b", "ts": 100.0, "clock_synced": True}


def test_rules_open_on_door_and_reader_trouble_and_clear_when_it_ends() -> None:
    def one(ev: m.Event) -> list[tuple[str, str, str]]:
        return [(d.action, d.kind, d.subject) for d in rules.from_event(ev)]

    assert one(m.DoorForcedOpen(id="1", door="eingang", **HEAD)) == [("open", "door_forced", "eingang")]
    assert one(m.DoorHeldOpen(id="2", door="eingang", seconds=90, **HEAD)) == [("open", "door_held", "eingang")]
    assert one(m.DoorClosed(id="3", door="eingang", **HEAD)) == [("clear", "door_forced", "eingang"),
                                                                 ("clear", "door_held", "eingang")]
    assert one(m.ReaderTamper(id="4", reader="r1", **HEAD)) == [("open", "reader_tamper", "r1")]
    assert one(m.ReaderOffline(id="5", reader="r1", **HEAD)) == [("open", "reader_offline", "r1")]
    assert rules.from_event(m.ReaderError(id="6", reader="r1", error="no SC", **HEAD))[0].detail == "no SC"
    assert [d.kind for d in rules.from_event(m.ReaderOnline(id="7", reader="r1", **HEAD))] == list(rules.READER_KINDS)
    assert one(m.DoorOpened(id="8", door="eingang", **HEAD)) == []


def test_rules_a_site_offline_opens_after_the_threshold_and_clears_online() -> None:
    seen = [rules.SiteSeen("a", False, 100.0), rules.SiteSeen("b", False, 150.0), rules.SiteSeen("c", True, 160.0),
            rules.SiteSeen("d", False, None)]
    got = rules.offline(seen, {"c"}, now=200.0, offline_seconds=60.0)
    assert [(s, d.action, d.at) for s, d in got] == [("a", "open", 100.0), ("c", "clear", 160.0)]
    assert rules.offline(seen, {"a"}, now=200.0, offline_seconds=60.0) == []  # open already; b not yet


def _mail(to: str) -> OutMail:
    return compose(what="opened", kind="door_forced", subject="eingang", site_id="minheim", site_name="Minheim",
                   at=100.0, link="https://x/sites/minheim", recipient=to)


def test_an_alert_is_opened_once_with_its_messages_and_resolved_once(store: Store) -> None:
    a = store.open_alert("minheim", "door_forced", "eingang", at=100.0, detail=None, mails=[_mail("a@x.de")])
    assert a is not None
    assert store.open_alert("minheim", "door_forced", "eingang", at=101.0, detail=None, mails=[_mail("a@x.de")]) \
        is None
    other = store.open_alert("minheim", "door_forced", "hof", at=101.0, detail=None, mails=[])
    assert other is not None and other != a
    assert store.resolve_alert("minheim", "door_held", "eingang", at=102.0, mails=[_mail("a@x.de")]) is None
    assert store.resolve_alert("minheim", "door_forced", "eingang", at=103.0, mails=[_mail("a@x.de")]) == a
    assert store.resolve_alert("minheim", "door_forced", "eingang", at=104.0, mails=[_mail("a@x.de")]) is None
    assert [x.subject for x in store.open_alerts()] == ["hof"]
    assert [(x.what, x.alert_id) for x in store.alert_mails()] == [("opened", a), ("resolved", a)]
    # A new occurrence after the last resolved is a new alert.
    assert store.open_alert("minheim", "door_forced", "eingang", at=105.0, detail=None, mails=[]) not in (None, a)


def test_the_queue_claims_due_messages_retries_them_and_marks_them_sent(store: Store) -> None:
    store.open_alert("minheim", "reader_tamper", "r1", at=100.0, detail=None, mails=[_mail("a@x.de"), _mail("b@x.de")])
    claimed = store.claim_alert_mails(200.0, lease=30.0)
    assert [x.recipient for x in claimed] == ["a@x.de", "b@x.de"]
    assert store.claim_alert_mails(200.0, lease=30.0) == []  # leased
    store.alert_mail_retry(claimed[0].id, "451 try later", next_try=300.0)
    store.alert_mail_sent(claimed[1].id, now=201.0)
    assert store.next_alert_mail_due() == 300.0
    again = store.claim_alert_mails(300.0, lease=30.0)
    assert [(x.recipient, x.attempts, x.last_error) for x in again] == [("a@x.de", 1, "451 try later")]
    store.alert_mail_sent(again[0].id, now=301.0)
    assert store.next_alert_mail_due() is None
    assert [x.state for x in store.alert_mails()] == ["sent", "sent"]


class _RefuseFirst(Keep):
    """Answers 451 (try later) to the first message, then takes them."""

    refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refused == 0:
            self.refused += 1
            return "451 4.3.0 try again later"
        return await super().handle_DATA(server, session, envelope)


def test_the_mailer_tries_a_refused_message_again_and_marks_it_sent_once_taken(tmp_path: Path) -> None:
    doc = dict(SITES_TOML, alerts={"smtp_host": "127.0.0.1", "smtp_port": 1, "smtp_starttls": False,
                                   "from": "hub@example.org", "retry_first_seconds": 0.1, "retry_max_seconds": 0.2})
    path = tmp_path / "hub.toml"
    with SmtpSink() as sink:
        doc["alerts"]["smtp_port"] = sink.port
        path.write_text(tomli_w.dumps(doc))
        cfg = config.load(path, check_files=False)
        from aiosmtpd.controller import Controller

        ctl = Controller(_RefuseFirst(sink), hostname=sink.host, port=sink.port)
        ctl.start()
        try:
            with open_store(cfg.hub.store_url) as store:
                store.open_alert("minheim", "door_forced", "eingang", at=time.time(), detail=None,
                                 mails=[_mail("a@example.org")])
                mailer = Mailer(cfg)
                mailer.start()
                try:
                    wait_for(lambda: store.alert_mails()[0].state == "sent", 10, what="the message sent")
                finally:
                    mailer.stop()
                mail = store.alert_mails()[0]
                assert (mail.attempts, mailer.retried, mailer.sent) == (2, 1, 1)
        finally:
            ctl.stop()
        assert [r for r, _ in sink.messages()] == [["a@example.org"]]
        msg = sink.messages()[0][1]
        assert msg["From"] == "hub@example.org" and "Tür eingang aufgebrochen" in msg["Subject"]


ALERTS = """
[alerts]
smtp_host = "mail.example.org"
from = "torwart@example.org"
"""


def test_the_alerts_section_loads_with_defaults(tmp_path: Path) -> None:
    cfg = config.load(write_hub_config(tmp_path, extra=ALERTS))
    a = cfg.alerts
    assert a is not None and (a.port, a.smtp_starttls, a.offline_minutes, a.from_) == (
        587, True, 10.0, "torwart@example.org")
    assert cfg.dashboard_url() == "http://127.0.0.1:8080"
    plain = config.load(write_hub_config(tmp_path, extra=ALERTS + "smtp_starttls = false\n"))
    assert plain.alerts is not None and plain.alerts.port == 25
    assert config.load(write_hub_config(tmp_path)).alerts is None


@pytest.mark.parametrize(("extra", "key"), [
    ('smtp_user = "x"\n', "alerts.smtp_user"),
    ('offline_minutes = 0\n', "alerts.offline_minutes"),
    ('smtp_port = 70000\n', "alerts.smtp_port"),
    ('dashboard_url = "torwart.example.org"\n', "alerts.dashboard_url"),
    ('smtp_password_file = "secrets/smtp"\n', "alerts.smtp_username"),
    ('retry_first_seconds = 60\nretry_max_seconds = 10\n', "alerts.retry_max_seconds"),
])
def test_a_bad_alerts_key_is_named(tmp_path: Path, extra: str, key: str) -> None:
    assert refused(write_hub_config(tmp_path, extra=ALERTS + extra)).key == key


def test_a_bad_from_and_a_missing_host_are_named(tmp_path: Path) -> None:
    assert refused(write_hub_config(tmp_path, extra=ALERTS.replace("torwart@example.org", "torwart"))).key \
        == "alerts.from"
    assert refused(write_hub_config(tmp_path, extra='[alerts]\nfrom = "a@b.de"\n')).key == "alerts.smtp_host"


def test_an_smtp_password_file_readable_by_others_is_refused_and_exits_2(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secrets" / "smtp"
    path = write_hub_config(tmp_path, extra=ALERTS + textwrap.dedent("""
        smtp_username = "torwart"
        smtp_password_file = "secrets/smtp"
    """))
    secret.write_text(secrets.token_urlsafe(12))
    os.chmod(secret, 0o600)
    assert config.load(path).alerts is not None
    os.chmod(secret, 0o644)
    err = refused(path)
    assert err.key == "alerts.smtp_password_file" and "chmod 600" in str(err)
    assert hub_main(["run", "--config", str(path)]) == 2  # refused before anything starts
    assert "alerts.smtp_password_file" in capsys.readouterr().err


def test_users_get_an_address_and_a_bad_one_changes_nothing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(SITES_TOML))
    cfg = str(path)
    pw = password_file(tmp_path, secrets.token_urlsafe(12))
    assert hub_main(["users", "add", "anna", "--role", "caretaker", "--sites", "minheim", "--password-file", pw,
                     "--email", "anna@example.org", "--config", cfg]) == 0
    assert hub_main(["users", "add", "boss", "--role", "admin", "--password-file", pw, "--config", cfg]) == 0
    assert hub_main(["users", "add", "carl", "--role", "admin", "--password-file", pw, "--email", "carl at home",
                     "--config", cfg]) == 1
    assert "is not an e-mail address" in capsys.readouterr().err
    assert hub_main(["users", "list", "--config", cfg]) == 0
    assert "anna@example.org" in capsys.readouterr().out
    with open_store(tmp_path / "data" / "hub.sqlite3") as store:
        assert {u.name: u.email for u in store.users()} == {"anna": "anna@example.org", "boss": None}
