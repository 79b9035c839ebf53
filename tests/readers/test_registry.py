"""The reader registry: a type name gives its config struct, a module is loaded only when its
type is used, ``TYPE:DEVICE`` configures the serial types, and the package stands on its
own (it imports neither the edge nor the hub)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from readers import TYPES, ReaderConfig, ReaderConfigError, config_type
from readers.registry import device_types

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_registered_type_names_its_config_struct(name: str) -> None:
    cls = config_type(name)
    assert issubclass(cls, ReaderConfig) and cls is not ReaderConfig
    assert cls.type_name == name


def test_an_unknown_type_is_a_config_error_on_the_type_key_naming_the_known_ones() -> None:
    with pytest.raises(ReaderConfigError) as exc:
        config_type("magstripe")
    assert exc.value.key == "type"
    assert "'magstripe'" in exc.value.message and all(t in exc.value.message for t in TYPES)


def test_a_device_path_alone_configures_the_serial_types_at_their_usual_baud_rate() -> None:
    assert device_types() == ["rdm6300", "pn532"]
    rdm = config_type("rdm6300").for_device("desk", "/dev/ttyUSB0")
    pn = config_type("pn532").for_device("desk", "/dev/ttyUSB1", holdoff_seconds=0.5)
    assert (rdm.id, getattr(rdm, "port", None), getattr(rdm, "baudrate", None)) == ("desk", "/dev/ttyUSB0", 9600)
    assert (getattr(pn, "baudrate", None), pn.holdoff_seconds) == (115200, 0.5)
    for name in set(TYPES) - set(device_types()):
        with pytest.raises(ReaderConfigError):
            config_type(name).for_device("desk", "/dev/ttyUSB0")


def test_a_driver_module_is_imported_only_when_its_type_is_used() -> None:
    out = _python("import json, sys\n"
                  "from readers import config_type\n"
                  "config_type('rdm6300')\n"
                  "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('readers', 'osdp', 'gpiozero')))))")
    loaded = json.loads(out)
    assert "readers.rdm6300" in loaded
    assert not {"readers.osdp", "readers.wiegand", "readers.sim", "osdp", "osdp_sys", "gpiozero"} & set(loaded)


def test_the_readers_package_imports_neither_the_edge_nor_the_hub() -> None:
    mods = ", ".join(repr(f"readers.{m.stem}") for m in (ROOT / "readers").glob("*.py") if m.stem != "__init__")
    out = _python("import importlib, json, sys\n"
                  f"for m in [{mods}]:\n"
                  "    importlib.import_module(m)\n"
                  "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('edge', 'hub'))))")
    assert json.loads(out) == []
