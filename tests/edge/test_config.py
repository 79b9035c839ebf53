"""Site configs: the shipped ones are valid; every bad one is refused naming file and key,
with exit status 2, before a pin is touched."""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert cfg.readers[0].settings.baudrate == 9600
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
    ("site.timezone", "Europe/" + "B" * 300, "site.timezone"),  # too long for a file name: OSError
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
    doc = base_doc()
    doc["doors"][1]["lock_pin"] = 12  # GPIO5 is high at boot: see the boot-level tests below
    assert main(["check", "--config", str(write(tmp_path, doc))]) == 0
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


# --- pins the Pi pulls high at boot (edge/pins.py) ----------------------------------------


@pytest.mark.parametrize("pin", [5, 0, 8, "GPIO4", "BCM2", "BOARD3", "J8:29"])
def test_check_refuses_a_fail_secure_active_high_lock_on_a_pin_the_pi_pulls_high_at_boot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pin: int | str) -> None:
    doc = base_doc()
    doc["doors"][1]["lock_pin"] = pin  # fail = "secure", lock_active_high = true: the defaults
    p = write(tmp_path, doc)
    assert main(["check", "--config", str(p)]) == 2
    captured = capsys.readouterr()
    assert f"{p}: doors[1].lock_pin" in captured.err
    assert "GPIO0-8 pull high" in captured.err and "UNLOCKED during every boot" in captured.err
    assert "lock_active_high = false" in captured.err
    assert "config OK" not in captured.out


@pytest.mark.parametrize("door", [
    {"lock_pin": 5, "lock_active_high": False},  # active-low relay: high at boot = off = locked
    {"lock_pin": "BOARD29", "fail": "safe"},  # fail-safe: relay active = locked
    {"lock_pin": 9},  # GPIO9-27 are pulled low at boot
    {"lock_pin": "BOARD21"},  # = GPIO9
    {"lock_pin": 26},
])
def test_check_accepts_a_lock_pin_whose_boot_level_keeps_the_door_locked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], door: dict[str, Any]) -> None:
    doc = base_doc()
    doc["doors"][1].update(door)
    assert main(["check", "--config", str(write(tmp_path, doc))]) == 0
    assert "config OK" in capsys.readouterr().out


def test_header_pin_names_map_to_the_gpios_gpiozero_knows() -> None:
    from gpiozero.pins.mock import MockFactory

    from edge.pins import _HEADER_TO_GPIO, bcm_number

    board = MockFactory().board_info
    for header, gpio in _HEADER_TO_GPIO.items():
        assert board.to_gpio(f"BOARD{header}") == f"GPIO{gpio}"
        assert bcm_number(f"board{header}") == bcm_number(f"J8:{header}") == gpio
    assert bcm_number("WPI7") is None and bcm_number("BOARD1") is None  # 3V3: not a GPIO


def test_check_names_the_pin_factory_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            mock_pins: Any) -> None:
    doc = base_doc()
    doc["doors"][1]["lock_pin"] = 12
    p = write(tmp_path, doc)
    assert main(["check", "--config", str(p)]) == 0
    assert "pins  gpiozero pin factory MockFactory (mock)" in capsys.readouterr().out
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(p)], env=env, check=False,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "pins  gpiozero pin factory MockFactory (mock)" in run.stdout
