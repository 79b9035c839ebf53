"""Site configs: the shipped ones are valid; every bad one is refused naming file and key,
with exit status 2, before a pin is touched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from edge import config
from edge.__main__ import main
from edge.errors import ConfigError
from wire.keys import new_key, write_key_file

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def base_doc() -> dict[str, Any]:
    return {
        "site": {"id": "minheim", "data_dir": "data"},
        "hub": {"host": "localhost", "signing_public_key": GOOD_KEY, "cred_key_file": "cred.key"},
        "rooms": [{"id": "coworking", "capacity": 8}],
        "doors": [{"id": "eingang", "lock_pin": 17, "contact_pin": 27},
                  {"id": "coworking", "room": "coworking", "lock_pin": 5}],
        "readers": [{"id": "r1", "type": "rdm6300", "door": "eingang", "port": "/dev/ttyAMA0"},
                    {"id": "r2", "type": "wiegand", "door": "coworking", "d0_pin": 20, "d1_pin": 21}],
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    if not (tmp_path / "cred.key").exists():
        write_key_file(tmp_path / "cred.key", new_key())
    p = tmp_path / "site.toml"
    p.write_text(tomli_w.dumps(doc))
    return p


@pytest.mark.parametrize("name", ["minheim.toml", "example.toml"])
def test_shipped_site_configs_are_valid(name: str) -> None:
    cfg = config.load(ROOT / "firmware_configs" / "sites" / name, check_files=False)
    assert cfg.doors and cfg.readers
    if name == "minheim.toml":
        assert cfg.site.id == "minheim" and cfg.site.name == "Bürgerhaus Minheim"


def test_a_good_config_resolves_paths_and_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, base_doc()))
    assert cfg.site.data_dir == str(tmp_path / "data")
    assert cfg.hub.cred_key_file == str(tmp_path / "cred.key")
    assert cfg.hub.effective_port == 1883
    assert cfg.readers[0].baudrate == 9600
    assert cfg.policy.clock_trust == "ntp"
    assert cfg.doors[0].fail == "secure"


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "key"), [
    ("site.idd", "x", "site.idd"),
    ("site.id", "Minheim", "site.id"),
    ("site.timezone", "Mars/Olympus", "site.timezone"),
    ("site.data_dir", _DELETE, "site.data_dir"),
    ("policy", {"clock_trust": "sundial"}, "policy.clock_trust"),
    ("policy", {"retention_days": 0}, "policy.retention_days"),
    ("hub.signing_public_key", "not-a-key", "hub.signing_public_key"),
    ("hub.port", 70000, "hub.port"),
    ("hub.tls", "yes", "hub.tls"),
    ("hub.session_expiry", -1, "hub.session_expiry"),
    ("hub.session_expiry", 90 * 86400, "hub.session_expiry"),
    ("doors.0.lock_pin", 5, "doors[1].lock_pin"),
    ("doors.1.room", "kitchen", "doors[1].room"),
    ("doors.0.fail", "open", "doors[0].fail"),
    ("doors.0.unlock_seconds", 0, "doors[0].unlock_seconds"),
    ("doors.1.id", "eingang", "doors[1].id"),
    ("doors.0.office_hours", [{"days": "mon-frx", "start": "08:00", "end": "18:00"}],
     "doors[0].office_hours[0].days"),
    ("doors.0.office_hours", [{"start": "8:00", "end": "18:00"}], "doors[0].office_hours[0].start"),
    ("readers.0.door", "back", "readers[0].door"),
    ("readers.0.port", _DELETE, "readers[0].port"),
    ("readers.0.type", "magstripe", "readers[0].type"),
    ("readers.1.d1_pin", _DELETE, "readers[1].d0_pin"),
    ("readers.1.d0_pin", 17, "readers[1].d0_pin"),
    ("doors", [], "doors"),
])
def test_a_bad_key_is_refused_naming_file_and_key(tmp_path: Path, path: str, value: Any, key: str) -> None:
    doc = base_doc()
    _set(doc, path, value)
    p = write(tmp_path, doc)
    with pytest.raises(ConfigError) as exc:
        config.load(p)
    assert exc.value.key == key, str(exc.value)
    assert exc.value.file == str(p)
    assert str(p) in str(exc.value)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, base_doc())
    os.chmod(tmp_path / "cred.key", 0o644)
    with pytest.raises(ConfigError) as exc:
        config.load(p)
    assert exc.value.key == "hub.cred_key_file"
    assert "chmod 600" in str(exc.value)


def test_missing_and_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nid = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_cli_check_prints_the_site_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(write(tmp_path, base_doc()))]) == 0
    out = capsys.readouterr().out
    assert "site minheim" in out and "reader r1: rdm6300" in out and "config OK" in out


def test_bad_config_stops_run_with_status_2_before_any_pin_is_claimed(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = base_doc()
    doc["doors"][1]["lock_pin"] = 17  # pin used twice
    p = write(tmp_path, doc)
    assert main(["run", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}: doors[1].lock_pin" in err
    assert mock_pins.pins == {}  # not a single pin was claimed
