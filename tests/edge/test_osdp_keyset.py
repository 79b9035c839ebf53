"""``torwart-edge readers keyset``: a factory-fresh OSDP reader (libosdp's PeripheralDevice
in install mode, default key) is put on a new random key that lands in ``scbk_file``."""

from __future__ import annotations

import os
import queue
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from osdp import Command

from edge import config
from edge.__main__ import main
from readers import make_reader
from readers.osdp_keyset import SCBK_D
from testkit.osdp_pd import PdBus, wiegand_frame
from testkit.util import wait_for
from wire.keys import read_scbk_file, write_scbk_file

from .test_config import base_doc, write
from .test_readers_osdp import Sink


@pytest.fixture
def bus() -> Iterator[PdBus]:
    b = PdBus()
    yield b
    b.close()


def _site(tmp_path: Path, port: str) -> Path:
    doc: dict[str, Any] = base_doc()
    doc["readers"].append({"id": "o1", "type": "osdp", "door": "eingang", "port": port, "baudrate": 115200,
                           "address": 7, "scbk_file": "o1.scbk"})
    return write(tmp_path, doc)


def test_keyset_puts_a_factory_fresh_reader_on_a_new_key_the_agent_then_reads_with(
        bus: PdBus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd = bus.add(7, SCBK_D, install_mode=True)
    site = _site(tmp_path, bus.port)
    assert main(["readers", "keyset", "--config", str(site), "o1"]) == 0
    key_file = tmp_path / "o1.scbk"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = read_scbk_file(key_file)
    assert key != SCBK_D
    assert [c["data"] for c in pd.commands if c["command"] == Command.Keyset] == [key]
    assert "o1.scbk" in capsys.readouterr().out
    assert not (tmp_path / "o1.scbk.new").exists()
    # The config now loads (the key file is checked) and the reader is read over Secure Channel.
    cfg = config.load(site)
    sink = Sink()
    reader = make_reader(cfg.readers[-1].settings, sink)
    reader.start()
    try:
        wait_for(lambda: getattr(reader, "online", False), timeout=10, what="online with the new key")
        pd.card(26, wiegand_frame(26, 0x0C0FFE))
        assert sink.reads.get(timeout=5) == ("o1", "wiegand26:0C0FFE")
    finally:
        reader.stop()


def test_keyset_on_a_reader_not_in_install_mode_fails_and_writes_nothing(
        bus: PdBus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bus.add(7, os.urandom(16))  # already keyed by someone else
    site = _site(tmp_path, bus.port)
    assert main(["readers", "keyset", "--config", str(site), "o1", "--timeout", "2"]) == 1
    assert "install mode" in capsys.readouterr().err
    assert not (tmp_path / "o1.scbk").exists() and not (tmp_path / "o1.scbk.new").exists()


def test_keyset_rotates_a_keyed_reader_to_a_new_key(bus: PdBus, tmp_path: Path) -> None:
    old = os.urandom(16)
    bus.add(7, old)
    site = _site(tmp_path, bus.port)
    write_scbk_file(tmp_path / "o1.scbk", old)
    assert main(["readers", "keyset", "--config", str(site), "o1"]) == 0
    new = read_scbk_file(tmp_path / "o1.scbk")
    assert new != old


def test_keyset_refuses_a_reader_that_is_not_osdp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _site(tmp_path, "/dev/null")
    assert main(["readers", "keyset", "--config", str(site), "r1"]) == 2
    assert "readers[0].type" in capsys.readouterr().err


def test_keyset_refuses_to_share_the_bus_with_a_running_reader(bus: PdBus, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    key = os.urandom(16)
    bus.add(7, key)
    site = _site(tmp_path, bus.port)
    write_scbk_file(tmp_path / "o1.scbk", key)
    sink = Sink()
    reader = make_reader(config.load(site).readers[-1].settings, sink)
    reader.start()
    try:
        wait_for(lambda: getattr(reader, "online", False), timeout=10, what="online")
        assert main(["readers", "keyset", "--config", str(site), "o1"]) == 1
        assert "agent running" in capsys.readouterr().err
        assert read_scbk_file(tmp_path / "o1.scbk") == key
        with pytest.raises(queue.Empty):
            sink.errors.get(timeout=0.3)
    finally:
        reader.stop()
