"""``torwart-hub`` as an admin uses it, run in-process: init, site add, cards, grants, the
sites table, events, sync with progress, and the exit codes of refusals."""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
import stat
from pathlib import Path

import pytest

from hub.__main__ import main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.util import free_port
from tests.hub.test_provision import hub_config

CARD = "em4100:7E00A1B2C3"
FOB = "iso14443a:04A1B2C3D4E5F6"

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cfg_path(tmp_path: Path, booking_platform: BookingPlatform, capsys: Capsys) -> Path:
    """An initialised hub with site minheim provisioned, talking to the platform fake."""
    path = hub_config(tmp_path, base_url=booking_platform.base_url, token=booking_platform.token,
                      mqtt_port=free_port())
    assert run(capsys, "init", "--config", str(path))[0] == 0
    assert run(capsys, "site", "add", "minheim", "--bundle", "--config", str(path), "--broker-host",
               "mqtt.example")[0] == 0
    return path


def test_init_creates_keys_and_the_database_once(tmp_path: Path, capsys: Capsys) -> None:
    path = str(hub_config(tmp_path))
    code, out, _ = run(capsys, "init", "--config", path)
    assert code == 0 and "signing key" in out and "CA" in out
    assert (tmp_path / "data" / "hub.sqlite3").exists()
    code, out, _ = run(capsys, "init", "--config", path)
    assert code == 0 and "nothing to do" in out


def test_init_broker_group_from_the_command_line(tmp_path: Path, capsys: Capsys) -> None:
    path = str(hub_config(tmp_path))
    code, _, err = run(capsys, "init", "--config", path, "--broker-group", "no-such-group-xyz")
    assert code != 0 and "no group named 'no-such-group-xyz'" in err
    own = grp.getgrgid(os.getgid()).gr_name
    code, out, _ = run(capsys, "init", "--config", path, "--broker-group", own)
    assert code == 0 and "broker's group" in out
    assert stat.S_IMODE((tmp_path / "data" / "mosquitto" / "passwd").stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", [["--bundle"], []])
def test_site_add_warns_when_the_site_is_given_a_loopback_broker(tmp_path: Path, capsys: Capsys,
                                                                 mode: list[str]) -> None:
    # A Pi told "localhost" would connect to itself: both ways of adding a site say so, and
    # restart the hub, while a public name gets no warning.
    path = str(hub_config(tmp_path))
    run(capsys, "init", "--config", path)
    code, out, err = run(capsys, "site", "add", "altdorf", *mode, "--broker-host", "localhost", "--config", path)
    assert code == 0 and "systemctl restart torwart-hub" in out
    assert "will connect to localhost" in err and "--broker-host" in err
    code, out, err = run(capsys, "site", "add", "bausendorf", *mode, "--broker-host", "mqtt.example", "--config",
                         path)
    assert code == 0 and "systemctl restart torwart-hub" in out and "warning" not in err


def test_site_add_says_where_the_bundle_is_and_what_to_copy(tmp_path: Path, capsys: Capsys) -> None:
    path = str(hub_config(tmp_path))
    run(capsys, "init", "--config", path)
    code, out, err = run(capsys, "site", "add", "altdorf", "--bundle", "--name", "Altdorf", "--broker-host",
                         "mqtt.example", "--tls", "--config", path)
    bundle = tmp_path / "data" / "provision" / "altdorf"
    assert code == 0 and str(bundle) in out and "rsync" in out and "torwart-edge check" in out
    assert (bundle / "site.toml").exists() and "altdorf.crt" in out and err == ""
    code, _, err = run(capsys, "site", "add", "Alt_Dorf", "--config", path)
    assert code == 1 and "not a valid site id" in err
    code, _, err = run(capsys, "site", "add", "altdorf", "--config", path)
    assert code == 1 and "already configured" in err


def test_a_config_error_exits_2_naming_the_file_and_the_key(tmp_path: Path, capsys: Capsys) -> None:
    path = hub_config(tmp_path)
    path.write_text(path.read_text().replace("[mqtt]", "[mqtt]\nhots = \"typo\""))
    code, out, err = run(capsys, "sites", "--config", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"config error: {path}: mqtt.hots: unknown key")
    code, _, err = run(capsys, "init", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "missing.toml" in err


def test_cards_are_enrolled_listed_by_type_and_fingerprint_and_removed(cfg_path: Path, capsys: Capsys) -> None:
    c = str(cfg_path)
    code, out, _ = run(capsys, "cards", "add", "m1", CARD.lower(), "--name", "Anna Beispiel", "--config", c)
    assert code == 0 and "member m1 created" in out and "enrolled em4100 credential" in out
    code, out, _ = run(capsys, "cards", "add", "m1", FOB, "--config", c)
    assert code == 0
    code, out, _ = run(capsys, "cards", "list", "--config", c)
    assert "Anna Beispiel" in out and "em4100" in out and "iso14443a" in out
    assert CARD.split(":")[1] not in out and FOB.split(":")[1] not in out

    code, _, err = run(capsys, "cards", "add", "m2", CARD, "--config", c)
    assert code == 1 and "already enrolled to member 'm1'" in err and "7E00A1B2C3" not in err
    code, _, err = run(capsys, "cards", "add", "m2", "em4100:7E00A1B2C3ZZ", "--config", c)
    assert code == 1 and "malformed" in err and "7E00A1B2C3" not in err
    code, _, err = run(capsys, "cards", "add", "m2", "7E00A1B2C3", "--config", c)
    assert code == 1 and "TYPE:VALUE" in err and "7E00A1B2C3" not in err

    code, out, _ = run(capsys, "cards", "remove", "m1", CARD, "--config", c)
    assert code == 0 and "removed em4100" in out
    code, out, _ = run(capsys, "cards", "list", "m1", "--config", c)
    assert "em4100" not in out and "iso14443a" in out
    with open_store(cfg_path.parent / "data" / "hub.sqlite3") as store:
        assert store.get_member("m2") is None


def test_a_csv_import_is_all_or_nothing_and_names_the_bad_line(cfg_path: Path, tmp_path: Path,
                                                                capsys: Capsys) -> None:
    c = str(cfg_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"member_id,credential,name,email\nm1,{CARD},Anna,anna@example.org\n"
                   "m2,em4100:NOTHEX1234,Bert,\nm3,pin:4821,Carl,\n")
    code, out, err = run(capsys, "cards", "import", str(bad), "--config", c)
    assert code == 1 and "line 3" in err and "nothing imported" in err and "NOTHEX" not in err
    assert "line 2" not in err and "line 4" not in err
    with open_store(cfg_path.parent / "data" / "hub.sqlite3") as store:
        assert store.members() == [] and store.owner_of_credential(CARD) is None

    good = tmp_path / "good.csv"
    good.write_text(f"member_id,credential,name,email\nm1,{CARD},Anna,anna@example.org\nm1,{FOB},,\n"
                    "m3,pin:4821,Carl,\n")
    code, out, _ = run(capsys, "cards", "import", str(good), "--config", c)
    assert code == 0 and "imported 3 new credentials" in out and "2 of them new" in out
    dup = tmp_path / "dup.csv"
    dup.write_text(f"member_id,credential\nm9,{CARD}\n")
    code, _, err = run(capsys, "cards", "import", str(dup), "--config", c)
    assert code == 1 and "line 2" in err and "already enrolled to member 'm1'" in err


def test_grants_are_added_listed_removed_and_rebuild_the_cache(cfg_path: Path, capsys: Capsys) -> None:
    c = str(cfg_path)
    run(capsys, "cards", "add", "caretaker", FOB, "--name", "Hausmeister", "--config", c)
    code, out, _ = run(capsys, "grants", "add", "caretaker", "minheim", "--doors", "main", "--until",
                       "2099-12-31T18:00", "--label", "caretaker", "--config", c)
    assert code == 0 and "grant 1: member caretaker may open main of site minheim" in out
    assert "site minheim: new cache version" in out
    code, out, _ = run(capsys, "grants", "list", "--site", "minheim", "--config", c)
    assert "Hausmeister" in out and "2099-12-31 18:00" in out and "caretaker" in out
    code, _, err = run(capsys, "grants", "add", "caretaker", "minheim", "--doors", "attic", "--config", c)
    assert code == 1 and "attic" in err
    code, _, err = run(capsys, "grants", "add", "caretaker", "minheim", "--until", "soon", "--config", c)
    assert code == 2 and "not an ISO 8601 time" in err
    code, out, _ = run(capsys, "grants", "remove", "1", "--config", c)
    assert code == 0 and "grant 1 removed" in out
    code, _, err = run(capsys, "grants", "remove", "1", "--config", c)
    assert code == 1 and "no grant 1" in err


def test_sync_shows_progress_then_the_summary_and_the_new_cache(
    cfg_path: Path, booking_platform: BookingPlatform, capsys: Capsys
) -> None:
    c = str(cfg_path)
    run(capsys, "cards", "add", "m1", CARD, "--config", c)
    t = dt.datetime.now(dt.UTC).replace(microsecond=0)
    booking_platform.add("b1", "res-cowork", "m1", t + dt.timedelta(hours=1), t + dt.timedelta(hours=2))
    code, out, _ = run(capsys, "sync", "--config", c)
    assert code == 0
    lines = out.splitlines()
    assert any("page 1: HTTP 200" in ln for ln in lines)
    assert "rest: 1 bookings in 1 pages, 1 changed" in out and "site minheim: new cache version" in out
    assert lines.index(next(ln for ln in lines if "page 1" in ln)) < lines.index(
        next(ln for ln in lines if "changed" in ln))

    booking_platform.fail("garbage", times=None)
    code, out, err = run(capsys, "sync", "--config", c)
    assert code == 1 and "sync failed (1 in a row)" in err
    code, out, _ = run(capsys, "sites", "--config", c)
    assert "booking sync (rest): FAILING, 1 in a row" in out


def test_the_sites_table_and_the_event_log(cfg_path: Path, capsys: Capsys) -> None:
    c = str(cfg_path)
    code, out, _ = run(capsys, "sites", "--config", c)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["SITE", "NAME", "STATE"]
    assert "minheim" in out and "never seen" in out and "booking sync (rest): never run" in out

    with open_store(cfg_path.parent / "data" / "hub.sqlite3") as store:
        store.add_member("m1", "Anna", None)
        who = store.member_by_who(store.add_member("m1", "Anna", None).who)
        assert who is not None
        now = dt.datetime.now(dt.UTC).timestamp()
        events = [
            (1, "e1", "access.granted", now - 60, {"door": "main", "who": who.who, "reason": "booking"}),
            (2, "e2", "access.denied", now - 30, {"door": "cowork", "reason": "unknown_credential"}),
            (4, "e4", "door.opened", now - 10, {"door": "main"}),
        ]
        store.store_events("minheim", [
            (seq, eid, typ, ts, json.dumps({"id": eid, "site": "minheim", "seq": seq, "type": typ, "ts": ts, **extra}))
            for seq, eid, typ, ts, extra in events
        ], received_at=now)
        store.update_site_state("minheim", {"online": True, "since": now - 600, "outbox_pending": 3})

    code, out, _ = run(capsys, "events", "--site", "minheim", "--config", c)
    rows = out.splitlines()
    assert code == 0 and [r.split()[4] for r in rows[1:]] == ["access.granted", "access.denied", "door.opened"]
    assert "member=m1" in rows[1] and "reason=unknown_credential" in rows[2]
    code, out, _ = run(capsys, "events", "--type", "door.opened", "--config", c)
    assert len(out.splitlines()) == 2
    code, out, _ = run(capsys, "sites", "--config", c)
    assert "online since" in out and "4/2, 1 gaps" in out


def test_site_commands_refuse_an_unknown_site_and_report_an_unreachable_broker(
    cfg_path: Path, capsys: Capsys
) -> None:
    c = str(cfg_path)
    code, _, err = run(capsys, "push", "nowhere", "--config", c)
    assert code == 1 and "no site 'nowhere'" in err
    code, _, err = run(capsys, "unlock", "minheim", "main", "--timeout", "1", "--config", c)
    assert code == 1 and err
