"""OSDP reader entries in a site config: every key checked at load, naming file and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edge import config
from edge.errors import ConfigError
from wire.keys import write_scbk_file

from .test_config import base_doc, write


def osdp_doc(tmp_path: Path) -> dict[str, Any]:
    doc = base_doc()
    for i, name in enumerate(("a", "b")):
        if not (tmp_path / f"{name}.scbk").exists():
            write_scbk_file(tmp_path / f"{name}.scbk", bytes([i + 1]) * 16)
    doc["readers"] += [
        {"id": "o1", "type": "osdp", "door": "eingang", "port": "/dev/ttyUSB0", "address": 1, "scbk_file": "a.scbk"},
        {"id": "o2", "type": "osdp", "door": "coworking", "port": "/dev/ttyUSB0", "address": 2,
         "scbk_file": "b.scbk", "baudrate": 115200, "direction": "out"},
    ]
    return doc


def test_a_good_osdp_config_resolves_the_key_file_and_the_default_baudrate(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, osdp_doc(tmp_path)))
    o1, o2 = cfg.readers[2:]
    assert (o1.type, o1.settings.port, o1.settings.address, o1.settings.baudrate) == ("osdp", "/dev/ttyUSB0", 1, 9600)
    assert o1.settings.scbk_file == str(tmp_path / "a.scbk")
    assert (o2.settings.address, o2.settings.baudrate, o2.direction) == (2, 115200, "out")


_DELETE = object()


@pytest.mark.parametrize(("index", "field", "value", "key"), [
    (2, "address", 127, "readers[2].address"),
    (2, "address", -1, "readers[2].address"),
    (2, "address", "1", "readers[2].address"),
    (2, "address", _DELETE, "readers[2].address"),
    (3, "address", 1, "readers[3].address"),  # the same address twice on one port
    (2, "scbk_file", _DELETE, "readers[2].scbk_file"),
    (2, "scbk_file", "missing.scbk", "readers[2].scbk_file"),
    (2, "port", _DELETE, "readers[2].port"),
    (2, "baudrate", 300, "readers[2].baudrate"),
])
def test_a_bad_osdp_key_is_refused_naming_file_and_key(tmp_path: Path, index: int, field: str, value: Any,
                                                        key: str) -> None:
    doc = osdp_doc(tmp_path)
    if value is _DELETE:
        del doc["readers"][index][field]
    else:
        doc["readers"][index][field] = value
    p = write(tmp_path, doc)
    with pytest.raises(ConfigError) as exc:
        config.load(p)
    assert exc.value.key == key, str(exc.value)
    assert str(p) in str(exc.value)


def test_the_same_address_on_two_ports_is_fine(tmp_path: Path) -> None:
    doc = osdp_doc(tmp_path)
    doc["readers"][3].update(address=1, port="/dev/ttyUSB1")
    assert [r.settings.address for r in config.load(write(tmp_path, doc)).readers[2:]] == [1, 1]


@pytest.mark.parametrize(("content", "mode", "says"), [
    ("00" * 16 + "\n", 0o644, "chmod 600"),
    ("00" * 15 + "\n", 0o600, "32 hex"),
    ("zz" * 16 + "\n", 0o600, "32 hex"),
    ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 0o600, "32 hex"),
])
def test_a_bad_scbk_file_is_refused(tmp_path: Path, content: str, mode: int, says: str) -> None:
    doc = osdp_doc(tmp_path)
    (tmp_path / "a.scbk").write_text(content)
    os.chmod(tmp_path / "a.scbk", mode)
    with pytest.raises(ConfigError) as exc:
        config.load(write(tmp_path, doc))
    assert exc.value.key == "readers[2].scbk_file"
    assert says in str(exc.value)
