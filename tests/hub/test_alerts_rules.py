"""The alert rules for the remaining kinds (storage error, lockdown, clock, cache, repeated
denials, the booking sync) and who hears what (sites, kinds, channels, language, quiet
hours), as pure functions; the users' settings as the CLI and the dashboard give them."""

from __future__ import annotations

import datetime as dt
import typing
from typing import Any

import pytest

from hub.alerts import audience, rules
from hub.alerts.settings import URGENT, AlertKind
from hub.alerts.texts import KIND_NAMES, LOCAL, compose
from hub.store import AlertPrefs, User
from wire import messages as m

HEAD: dict[str, Any] = {"site": "minheim", "seq": 1, "boot": "b", "clock_synced": True}


def status(**kw: Any) -> m.Status:
    return m.Status(**{"state": "online", "ts": 100.0, **kw})


def test_every_kind_is_configurable_and_has_a_text_in_both_languages() -> None:
    assert set(typing.get_args(AlertKind)) == set(rules.KINDS)
    assert set(URGENT) <= set(rules.KINDS)
    assert set(KIND_NAMES) == set(rules.KINDS)
    for kind in rules.KINDS:
        for lang in ("de", "en"):
            mail = compose(what="opened", kind=kind, subject="eingang", site_id="minheim", site_name="Minheim",
                           at=0.0, link="https://x", recipient="a@b.de", lang=lang)
            assert KIND_NAMES[kind][("de", "en").index(lang)].format(s="eingang") in mail.subject
            assert "Minheim" in mail.subject


def test_a_status_opens_and_clears_storage_error_and_lockdown_and_the_last_will_says_nothing() -> None:
    def run(st: m.Status, is_open: set[str]) -> list[tuple[str, str, str | None]]:
        return [(d.action, d.kind, d.detail) for d in rules.from_status(st, is_open, 200.0)]

    assert run(status(storage_error="disk full"), set()) == [("open", "storage_error", "disk full")]
    assert run(status(storage_error="disk full"), {"storage_error"}) == []
    assert run(status(), {"storage_error"}) == [("clear", "storage_error", None)]
    assert run(status(lockdown=True), set()) == [("open", "lockdown", None)]
    assert run(status(lockdown=True), {"lockdown"}) == []
    assert run(status(), {"lockdown"}) == [("clear", "lockdown", None)]
    # The Last Will carries the defaults (no lockdown, no error): it clears nothing.
    assert run(m.Status(state="offline"), {"lockdown", "storage_error"}) == []


def test_lockdown_messages_say_started_and_ended() -> None:
    kw: dict[str, Any] = {"kind": "lockdown", "subject": "", "site_id": "minheim", "site_name": "Minheim", "at": 0.0,
                          "link": "x", "recipient": "a@b.de"}
    assert compose(what="opened", **kw).subject.startswith("[Torwart] Sperre begonnen")
    assert compose(what="resolved", lang="en", **kw).subject.startswith("[Torwart] Lockdown ended")


def test_a_slow_condition_opens_only_after_its_duration_and_clears_when_it_ends() -> None:
    since = rules.Since()
    key = ("minheim", rules.CLOCK_UNTRUSTED)
    since.see(key, True, 1000.0)
    since.see(key, True, 1500.0)  # still the first sighting
    assert rules.timed(rules.CLOCK_UNTRUSTED, key, since, is_open=False, now=2799.0, seconds=1800.0) is None
    d = rules.timed(rules.CLOCK_UNTRUSTED, key, since, is_open=False, now=2800.0, seconds=1800.0)
    assert d is not None and (d.action, d.at) == ("open", 1000.0)
    assert rules.timed(rules.CLOCK_UNTRUSTED, key, since, is_open=True, now=2900.0, seconds=1800.0) is None
    since.see(key, False, 3000.0)
    d = rules.timed(rules.CLOCK_UNTRUSTED, key, since, is_open=True, now=3000.0, seconds=1800.0)
    assert d is not None and d.action == "clear"


def test_repeated_denials_at_one_door_open_an_alert_and_other_refusals_do_not_count() -> None:
    den = rules.Denials(count=3, window=60.0)

    def deny(i: int, ts: float, reason: str = "unknown_credential", door: str = "eingang") -> rules.Decision | None:
        return den.add("minheim", m.AccessDenied(id=f"d{i}", ts=ts, door=door, cred=None, reason=reason,  # type: ignore[arg-type]
                                                 **HEAD), ts)

    assert deny(1, 0.0) is None
    assert deny(2, 10.0, "lockdown") is None  # the site's state, not someone guessing
    assert deny(3, 20.0, door="hof") is None  # another door
    assert deny(4, 30.0) is None
    assert deny(5, 100.0) is None  # the first two fell out of the window
    assert deny(6, 110.0) is None
    d = deny(7, 120.0, "wrong_door")
    assert d is not None and (d.action, d.kind, d.subject) == ("open", "denials", "eingang")
    assert not den.quiet("minheim", "eingang", 120.0, 170.0)
    assert den.quiet("minheim", "eingang", 120.0, 180.0)
    assert den.quiet("minheim", "keller", 500.0, 560.0)  # unknown to this process: from the alert's opening


def test_the_sync_alert_opens_after_enough_failures_and_clears_on_success() -> None:
    assert rules.sync(2, "503", False, 3, 1.0) is None
    d = rules.sync(3, "503", False, 3, 1.0)
    assert d is not None and (d.action, d.kind, d.detail) == ("open", "sync_failing", "503")
    assert rules.sync(5, "503", True, 3, 1.0) is None
    d = rules.sync(0, None, True, 3, 2.0)
    assert d is not None and d.action == "clear"


def _local(y: int, mo: int, d: int, h: int, mi: int) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=LOCAL).timestamp()


def test_quiet_hours_across_midnight_end_at_the_next_morning_local_time() -> None:
    p = AlertPrefs(user="anna", quiet_start=22 * 60, quiet_end=7 * 60)
    assert audience.quiet_until(p, _local(2026, 12, 3, 21, 59)) is None
    assert audience.quiet_until(p, _local(2026, 12, 3, 23, 30)) == _local(2026, 12, 4, 7, 0)
    assert audience.quiet_until(p, _local(2026, 12, 4, 3, 0)) == _local(2026, 12, 4, 7, 0)
    assert audience.quiet_until(p, _local(2026, 12, 4, 7, 0)) is None
    day = AlertPrefs(user="anna", quiet_start=12 * 60, quiet_end=13 * 60 + 30)
    assert audience.quiet_until(day, _local(2026, 7, 1, 12, 10)) == _local(2026, 7, 1, 13, 30)
    assert audience.quiet_until(AlertPrefs(user="anna"), _local(2026, 7, 1, 3, 0)) is None


USERS = [
    User(name="boss", role="admin", sites=None, password_hash="x", created_at=0, email="boss@x.de"),
    User(name="anna", role="caretaker", sites=("minheim",), password_hash="x", created_at=0, email="anna@x.de"),
    User(name="ben", role="caretaker", sites=("altdorf",), password_hash="x", created_at=0, email="ben@x.de"),
    User(name="nomail", role="admin", sites=None, password_hash="x", created_at=0, email=None),
]


def test_caretakers_hear_their_sites_admins_all_and_the_hub_only_reaches_those_who_see_everything() -> None:
    def who(site: str, kind: str = "door_forced", prefs: dict[str, AlertPrefs] | None = None) -> list[str]:
        return [r.user for r in audience.hearers(USERS, prefs or {}, site, kind, urgent=True, now=0.0)]

    assert who("minheim") == ["boss", "anna"]
    assert who("altdorf") == ["boss", "ben"]
    assert who("") == ["boss"]
    quiet = {"anna": AlertPrefs(user="anna", kinds=("site_offline",)), "boss": AlertPrefs(user="boss", channels=())}
    assert who("minheim", prefs=quiet) == []
    assert who("minheim", "site_offline", prefs=quiet) == ["anna"]
    assert [r.user for r in audience.admins(USERS, quiet)] == []  # boss turned e-mail off
    assert [(r.user, r.lang) for r in audience.admins(USERS, {"boss": AlertPrefs(user="boss", lang="en")})] == [
        ("boss", "en")]


def test_quiet_hours_hold_back_non_urgent_messages_only() -> None:
    prefs = {"anna": AlertPrefs(user="anna", quiet_start=22 * 60, quiet_end=7 * 60)}
    night = _local(2026, 12, 3, 23, 0)
    slow = audience.hearers(USERS, prefs, "minheim", "reader_offline", urgent=False, now=night)
    urgent = audience.hearers(USERS, prefs, "minheim", "door_forced", urgent=True, now=night)
    assert [(r.user, r.not_before) for r in slow] == [("boss", None), ("anna", _local(2026, 12, 4, 7, 0))]
    assert [(r.user, r.not_before) for r in urgent] == [("boss", None), ("anna", None)]


def test_settings_from_text_and_what_is_refused() -> None:
    p = audience.make_prefs("anna", lang="en", kinds="door_forced, site_offline", quiet="22:00-06:30")
    assert (p.lang, p.kinds, p.channels, p.quiet_start, p.quiet_end) == (
        "en", ("door_forced", "site_offline"), ("email",), 1320, 390)
    assert audience.format_quiet(p) == "22:00-06:30"
    assert audience.make_prefs("anna", kinds="*").kinds is None
    assert audience.make_prefs("anna", kinds="-").kinds == ()
    assert audience.make_prefs("anna", quiet="off").quiet_start is None


@pytest.mark.parametrize(("kw", "says"), [
    ({"lang": "fr"}, "language 'fr'"),
    ({"kinds": "door_forced,fire"}, "alert kind 'fire'"),
    ({"channels": "sms"}, "channel 'sms'"),
    ({"quiet": "22-7"}, "not HH:MM-HH:MM"),
    ({"quiet": "25:00-07:00"}, "not HH:MM-HH:MM"),
    ({"quiet": "07:00-07:00"}, "the same"),
])
def test_bad_settings_are_refused_with_the_field_named(kw: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        audience.make_prefs("anna", **kw)
