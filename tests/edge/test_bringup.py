"""Bring-up at the door: ``torwart-edge doors test`` and ``readers watch`` over real parts
(gpiozero MockFactory pins, an RDM6300 fake on a real pty, a real cache file), stopped with
a real SIGINT; and the run lock between them and the agent, both ways.

The command runs on this test's main thread (signal handlers live there); a driver
thread reads its output line by line, drives the pins and the fake reader, and ends it
with SIGINT to this process, as Ctrl-C would.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import config as edge_config
from edge.__main__ import main
from edge.agent import Agent
from edge.cache import CacheStore
from edge.outbox import Outbox
from edge.runlock import DataDirBusy, RunLock
from testkit.broker import Mosquitto
from testkit.rdm6300_fake import FakeRdm6300
from testkit.site import write_site
from testkit.util import next_matching
from tests.edge.hubside import agent_in_thread, entry
from wire import messages as m
from wire.keys import new_key, write_key_file

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
LOCK, CONTACT, EXIT = 17, 27, 22
MEMBER = "em4100:0A00B1C2D3"
STRANGER = "em4100:0B00004711"


class Lines:
    """A stdout that hands every whole line to a queue."""

    def __init__(self) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        self._buf = ""

    def write(self, s: str) -> int:
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self.all.append(line)
            self.q.put(line)
        return len(s)

    def flush(self) -> None:
        pass

    def expect(self, pattern: str, timeout: float = 5.0) -> str:
        try:
            return next_matching(self.q, lambda line: re.search(pattern, line) is not None, timeout)
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r}; got {self.all}") from None


def run_until_ctrl_c(argv: list[str], driver: Callable[[Lines], None]) -> tuple[int, Lines]:
    """``main(argv)`` here; ``driver`` on a thread, then SIGINT to this process."""
    lines = Lines()
    done = threading.Event()
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            driver(lines)
        except BaseException as exc:  # reported on the main thread below
            errors.append(exc)
        finally:
            if not done.is_set():
                os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=drive, name="driver", daemon=True)
    with redirect_stdout(lines):  # type: ignore[type-var]
        t.start()
        try:
            rc = main(argv)
        finally:
            done.set()
    t.join(10)
    if errors:
        raise errors[0]
    return rc, lines


def site_config(tmp_path: Path, port: str = "/dev/null") -> tuple[Path, bytes]:
    key = new_key()
    write_key_file(tmp_path / "cred.key", key)
    doc = {
        "site": {"id": "hall", "data_dir": "data"},
        "policy": {"clock_trust": "system"},
        "hub": {"host": "localhost", "signing_public_key": GOOD_KEY, "cred_key_file": "cred.key"},
        "doors": [{"id": "front", "lock_pin": LOCK, "contact_pin": CONTACT, "exit_pin": EXIT,
                   "unlock_seconds": 0.5}],
        "readers": [{"id": "front-in", "type": "rdm6300", "door": "front", "port": port}],
    }
    p = tmp_path / "site.toml"
    p.write_text(tomli_w.dumps(doc))
    return p, key


def assert_no_event(data: Path) -> None:
    with Outbox(data / "outbox.db", "hall", "check", read_only=True) as ob:
        assert ob.last_seq == 0 and ob.pending_count() == 0


def test_doors_test_pulses_the_relay_shows_contact_and_exit_live_and_ends_on_ctrl_c(
        tmp_path: Path, mock_pins: Any) -> None:
    cfg_path, _ = site_config(tmp_path)
    Outbox(tmp_path / "data" / "outbox.db", "hall", "before").close()

    def drive(lines: Lines) -> None:
        lines.expect(r"^door front: lock_pin=17 fail=secure contact=OPEN exit button=pin 22$")
        lines.expect(r"^relay: UNLOCKED$")
        assert mock_pins.pin(LOCK).state  # active high, fail-secure: high = unlocked
        lines.expect(r"^relay: locked$")
        assert not mock_pins.pin(LOCK).state
        contact, exit_ = mock_pins.pin(CONTACT), mock_pins.pin(EXIT)
        contact.drive_low()  # the reed switch closes to ground: door shut
        lines.expect(r"^contact: door closed$")
        contact.drive_high()
        lines.expect(r"^contact: door OPEN$")
        exit_.drive_low()
        lines.expect(r"^exit button: pressed$")
        exit_.drive_high()

    rc, lines = run_until_ctrl_c(["doors", "test", "--config", str(cfg_path), "front"], drive)
    assert rc == 0
    assert lines.all[-1] == "stopped; relay locked"
    assert [s.state for s in mock_pins.pin(LOCK).states].count(True) == 1  # pulsed exactly once
    assert_no_event(tmp_path / "data")
    RunLock.acquire(tmp_path / "data", "next").release()  # and it let go of the site


def test_doors_test_of_an_unknown_door_is_a_config_error(tmp_path: Path, mock_pins: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path, _ = site_config(tmp_path)
    assert main(["doors", "test", "--config", str(cfg_path), "back"]) == 2
    assert f"{cfg_path}: doors: no door 'back' (doors: front)" in capsys.readouterr().err
    assert mock_pins.pin(LOCK).states == mock_pins.pin(LOCK).states[:1]  # never driven


def test_readers_watch_shows_reads_with_the_last_four_hex_digits_and_the_caches_decision(
        tmp_path: Path, mock_pins: Any, capfd: pytest.CaptureFixture[str]) -> None:
    with FakeRdm6300() as fake:
        cfg_path, key = site_config(tmp_path, port=fake.path)
        now = int(time.time())
        with CacheStore(tmp_path / "data" / "cache.db") as cache:
            cache.apply(m.CacheFull(site="hall", version=7, issued_at=now, expires_at=now + 3600,
                                    entries=[entry(key, MEMBER, ["front"], ref=None)]))

        def drive(lines: Lines) -> None:
            lines.expect(r"^watching front-in; cache version 7 \(Ctrl-C ends\)$")
            fake.present(MEMBER.split(":")[1])
            lines.expect(r"^front-in \(in, door front\): em4100 …C2D3 → the cache would GRANT \(\w+\)$")
            fake.present(STRANGER.split(":")[1])  # swapped: a different card reads at once
            lines.expect(r"^front-in \(in, door front\): em4100 …4711 → the cache would deny \(\w+\)$")
            fake.remove()

        rc, lines = run_until_ctrl_c(["readers", "watch", "--config", str(cfg_path)], drive)
    assert rc == 0 and lines.all[-1] == "stopped"
    out = "\n".join(lines.all)
    captured = capfd.readouterr()
    for cred in (MEMBER, STRANGER):
        value = cred.split(":")[1]
        for text in (out, captured.out, captured.err):
            assert value[-5:] not in text  # never more than the last four digits
    assert not (tmp_path / "data" / "outbox.db").exists()  # no event recorded, nothing else either
    with CacheStore(tmp_path / "data" / "cache.db", read_only=True) as cache:
        assert cache.version == 7


def test_readers_watch_never_shows_a_pin_digit() -> None:
    from edge.bringup import shown

    assert shown("pin:4821") == "pin (digits hidden)"
    assert shown("bits37:0A1B2C3D48") == "bits37 …3D48"


def test_bring_up_commands_are_refused_while_the_agent_runs(
        tmp_path: Path, broker: Mosquitto, mock_pins: Any, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path / "site", "hall", broker, Ed25519PrivateKey.generate())
    with agent_in_thread(site):
        relay = mock_pins.pin(17)
        before = len(relay.states)
        for argv in (["doors", "test", "--config", str(site.config_path), "eingang"],
                     ["readers", "watch", "--config", str(site.config_path)]):
            assert main(argv) == 3
            err = capsys.readouterr().err
            assert f"{site.data_dir} is in use by the agent (pid {os.getpid()})" in err
            assert "systemctl stop torwart-edge" in err
        assert len(relay.states) == before  # the refused command never touched the relay
    RunLock.acquire(site.data_dir, "after").release()  # the stopped agent let go


def test_the_agent_cannot_start_while_a_bring_up_command_holds_the_site(
        tmp_path: Path, broker: Mosquitto, mock_pins: Any) -> None:
    site = write_site(tmp_path / "site", "hall", broker, Ed25519PrivateKey.generate())
    runs: list[subprocess.CompletedProcess[str]] = []

    def drive(lines: Lines) -> None:
        lines.expect(r"Ctrl-C ends")
        with pytest.raises(DataDirBusy, match=r"in use by torwart-edge doors test eingang \(pid"):
            Agent(edge_config.load(site.config_path))
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(ROOT)}
        runs.append(subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(site.config_path)],
                                   env=env, capture_output=True, text=True, timeout=60, check=False))

    rc, _ = run_until_ctrl_c(["doors", "test", "--config", str(site.config_path), "eingang"], drive)
    assert rc == 0
    [run] = runs
    assert run.returncode == 3, run.stderr
    assert "is in use by torwart-edge doors test eingang (pid" in run.stderr
    with agent_in_thread(site):  # once the bring-up has ended, the agent starts
        pass
