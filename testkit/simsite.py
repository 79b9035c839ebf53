"""A whole simulated site in one process: the real edge agent on gpiozero mock pins,
with a control FIFO that moves the door contacts and presses the exit buttons.

    python -m testkit.simsite --config SITE.toml --control FIFO_PATH [--log-level info]

It runs ``edge.agent.Agent`` exactly as ``torwart-edge run`` does (the same config
checks, exit status 2 on a bad config, SIGTERM/SIGINT stop it cleanly, one log line per
record on stderr), except that the pins are ``MockFactory`` pins living in this process.
Badges go through the site's ``sim`` readers (their FIFOs, ``SiteFiles.badge``); what a
person does with a door goes through the control FIFO, one line per action:

    open DOOR     the door contact reports "open"   (a person pulls the door open)
    close DOOR    the door contact reports "closed" (the door falls shut)
    exit DOOR     the exit button is pressed and released

The pins are the door's configured ``contact_pin`` and ``exit_pin``. Every door with a
contact starts shut: a reed switch held closed overrides the contact's pull-up (on a
plain ``MockPin`` the pull-up would make every door read "open" at start).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from edge import config as config_mod
from edge.config import EdgeConfig
from edge.errors import ConfigError, EdgeError
from wire.entrypoint import setup_logging, stop_on_signals

log = logging.getLogger("testkit.simsite")

#: An exit button is held down this long, as a finger would.
PRESS_SECONDS = 0.2


class SwitchPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A mock pin with a switch attached: while ``forced`` is a level, the switch holds the
    pin there whatever pull resistor is set; with ``forced`` None the pull decides, as on
    a plain ``MockPin``."""

    forced: bool | None = None

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        if self.forced is not None:
            self._drive(self.forced)

    def force(self, level: bool | None) -> None:
        """Hold the pin at ``level`` (None: release it to its pull)."""
        self.forced = level
        if level is None:
            pull = self._get_pull()
            if pull == "floating":
                return
            level = pull == "up"
        self._drive(level)

    def _drive(self, level: bool) -> None:
        (self.drive_high if level else self.drive_low)()


class Controls:
    """What the control FIFO can do to the doors of ``cfg``, on ``factory``'s pins."""

    def __init__(self, cfg: EdgeConfig, factory: MockFactory) -> None:
        self.cfg = cfg
        self.factory = factory
        self._contacts: dict[str, tuple[SwitchPin, bool]] = {}  # door → (pin, level while shut)
        self._exits: dict[str, SwitchPin] = {}
        for d in cfg.doors:
            if d.contact_pin is not None:
                pin = factory.pin(d.contact_pin)
                shut = not d.contact_closed_low
                self._contacts[d.id] = (pin, shut)
                pin.forced = shut  # shut from the start, before the agent claims the pin
            if d.exit_pin is not None:
                self._exits[d.id] = factory.pin(d.exit_pin)

    def handle(self, line: str) -> str | None:
        """Carry out one control line; return an error message, or None when done."""
        words = line.split()
        if not words:
            return None
        if len(words) != 2:
            return f"expected 'ACTION DOOR', got {line!r}"
        action, door = words
        if action in ("open", "close"):
            if door not in self._contacts:
                return f"door {door!r} has no contact_pin"
            pin, shut = self._contacts[door]
            pin.force(shut if action == "close" else not shut)
            return None
        if action == "exit":
            if door not in self._exits:
                return f"door {door!r} has no exit_pin"
            button = self._exits[door]
            button.force(False)  # the button pulls the pin low against its pull-up (gpiozero Button)
            time.sleep(PRESS_SECONDS)
            button.force(None)
            return None
        return f"unknown action {action!r} (open, close, exit)"


class ControlFifo:
    """Reads lines from the FIFO at ``path`` (created, mode 0600, if missing) on a thread
    and hands each to ``controls`` until ``stop()``."""

    def __init__(self, path: Path, controls: Controls) -> None:
        self.path = path
        self.controls = controls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simsite-control", daemon=True)

    def start(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(self.path, 0o600)
        else:
            if not stat.S_ISFIFO(st.st_mode):
                raise EdgeError(f"control path {self.path} exists and is not a FIFO")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        buf = b""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    continue
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    # Every writer left: reopen (new before old, so the pipe stays alive), as the sim reader does.
                    fresh = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                    poller.unregister(fd)
                    os.close(fd)
                    fd = fresh
                    poller.register(fd, select.POLLIN)
                    self._stop.wait(0.01)
                    continue
                *lines, buf = (buf + data).split(b"\n")
                for raw in lines:
                    self._line(raw.decode("utf-8", "replace").strip())
        finally:
            os.close(fd)

    def _line(self, line: str) -> None:
        if not line:
            return
        try:
            error = self.controls.handle(line)
        except Exception:
            log.exception("control line %r failed", line)
            return
        if error is None:
            log.info("control: %s", line)
        else:
            log.warning("control line refused: %s", error)


def run(config_path: str, control_path: str) -> int:
    cfg = config_mod.load(config_path)
    factory = MockFactory(pin_class=SwitchPin)
    Device.pin_factory = factory
    controls = Controls(cfg, factory)
    from edge.agent import Agent  # after the pin factory is set: doors claim pins at construction

    agent = Agent(cfg)
    stop_on_signals(agent.stop)
    fifo = ControlFifo(Path(control_path), controls)
    fifo.start()
    try:
        agent.run()
    finally:
        fifo.stop()
        with contextlib.suppress(Exception):
            factory.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.simsite",
                                     description="a simulated site: the edge agent on mock pins, doors by FIFO")
    parser.add_argument("--config", required=True, help="the site's TOML file")
    parser.add_argument("--control", required=True, metavar="FIFO", help="the control FIFO (created if missing)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args: Any = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return run(args.config, args.control)
    except ConfigError as exc:
        print(f"simsite: config error: {exc}", file=sys.stderr)
        return 2
    except EdgeError as exc:
        print(f"simsite: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
