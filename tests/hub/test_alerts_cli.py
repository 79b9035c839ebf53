"""``torwart-hub users add`` with alert options and ``torwart-hub users alerts``: what a
user hears, how, in which language and when not; a bad option is named and changes nothing."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import tomli_w

from hub.__main__ import main as hub_main
from hub.store import AlertPrefs, open_store
from tests.hub.test_dashboard_users import SITES_TOML, password_file


def _prefs(tmp_path: Path, name: str) -> tuple[AlertPrefs, str | None]:
    with open_store(str(tmp_path / "data" / "hub.sqlite3")) as store:
        user = store.get_user(name)
        return store.get_alert_prefs(name), None if user is None else user.email


def test_users_choose_what_they_hear_and_a_bad_option_changes_nothing(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(SITES_TOML))
    cfg = str(path)
    pw = password_file(tmp_path, secrets.token_urlsafe(12))
    assert hub_main(["users", "add", "anna", "--role", "caretaker", "--sites", "minheim", "--password-file", pw,
                     "--email", "anna@example.org", "--lang", "en", "--alert-kinds", "door_forced,site_offline",
                     "--quiet", "22:00-07:00", "--config", cfg]) == 0
    want = AlertPrefs(user="anna", lang="en", kinds=("door_forced", "site_offline"), quiet_start=1320, quiet_end=420)
    assert _prefs(tmp_path, "anna") == (want, "anna@example.org")
    capsys.readouterr()
    assert hub_main(["users", "alerts", "anna", "--quiet", "off", "--config", cfg]) == 0
    assert "door_forced, site_offline by email to anna@example.org, in en; quiet hours none" in capsys.readouterr().out
    assert _prefs(tmp_path, "anna")[0] == AlertPrefs(user="anna", lang="en", kinds=("door_forced", "site_offline"))
    for bad, says in ((["--alert-kinds", "door_forced,fire"], "alert kind 'fire'"),
                      (["--quiet", "22-7"], "not HH:MM-HH:MM"), (["--channels", "sms"], "channel 'sms'"),
                      (["--email", "anna at home"], "not an e-mail address")):
        assert hub_main(["users", "alerts", "anna", *bad, "--config", cfg]) == 1
        assert says in capsys.readouterr().err
    assert hub_main(["users", "alerts", "anna", "--lang", "fr", "--config", cfg]) == 2  # argparse: a choice
    assert _prefs(tmp_path, "anna") == (AlertPrefs(user="anna", lang="en", kinds=("door_forced", "site_offline")),
                                        "anna@example.org")
    assert hub_main(["users", "add", "ben", "--role", "caretaker", "--sites", "minheim", "--password-file", pw,
                     "--alert-kinds", "nope", "--config", cfg]) == 1
    assert _prefs(tmp_path, "ben") == (AlertPrefs(user="ben"), None)  # not even the user was added
    assert hub_main(["users", "alerts", "nobody", "--lang", "de", "--config", cfg]) == 1
    assert "no user 'nobody'" in capsys.readouterr().err
    assert hub_main(["users", "alerts", "anna", "--alert-kinds", "*", "--email", "-", "--config", cfg]) == 0
    assert _prefs(tmp_path, "anna") == (AlertPrefs(user="anna", lang="en"), None)
