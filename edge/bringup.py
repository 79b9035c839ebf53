"""Bring-up commands an installer runs at the door, with the agent stopped.

    torwart-edge doors test    --config PATH DOOR      pulse the door's relay once, then show its
                                                       contact and exit button live until Ctrl-C
    torwart-edge readers watch --config PATH [READER]  show each read: reader, credential type, the
                                                       last 4 hex digits, what the cache would decide
    torwart-edge readers keyset --config PATH READER   put an OSDP reader on a new random key
                                                       (``readers.osdp_keyset``), written to scbk_file

None writes an event, a cache or a state: they only drive the pins and read (keyset: and
writes the reader's key file). All take the site's run lock (``edge/runlock.py``), so they
refuse to run while the agent runs and the agent refuses to start while one of them runs
(exit status 3, naming the holder). Ctrl-C (SIGINT) or SIGTERM ends them with exit status 0. A full credential
string is never printed: an installer's terminal, a screenshot or a shared log must not
carry a card number that could be replayed; a PIN shows no digit at all.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
from contextlib import ExitStack
from types import FrameType, TracebackType
from typing import Any

from readers import ReaderError, make_reader
from wire.creds import cred_hash

from . import config as config_mod
from .errors import ConfigError, ReaderFailed
from .runlock import RunLock


def add_commands(sub: Any) -> Any:
    """Register ``doors test``, ``readers watch`` and ``readers keyset`` on ``torwart-edge``'s
    subparsers; return the ``readers`` subparsers."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="the site's TOML file")
        p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])

    doors = sub.add_parser("doors", help="bring-up: test a door's wiring")
    dsub = doors.add_subparsers(dest="doors_command", required=True)
    t = dsub.add_parser("test", help="pulse the relay once, then show contact and exit button live until Ctrl-C")
    common(t)
    t.add_argument("door", help="the door's id in the config")
    t.set_defaults(fn=cmd_doors_test)
    readers = sub.add_parser("readers", help="bring-up and maintenance of the card readers")
    rsub = readers.add_subparsers(dest="readers_command", required=True)
    w = rsub.add_parser("watch", help="show each read and what the cache would decide, until Ctrl-C")
    common(w)
    w.add_argument("reader", nargs="?", help="only this reader (default: all)")
    w.set_defaults(fn=cmd_readers_watch)
    k = rsub.add_parser("keyset", help="put a factory-fresh OSDP reader on a new random key (writes scbk_file)")
    k.add_argument("--config", required=True, help="the site's TOML file")
    k.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    k.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each step")
    k.add_argument("reader", help="the reader's id in [[readers]]")
    k.set_defaults(fn=cmd_readers_keyset)
    return rsub


class _Until:
    """Until SIGINT or SIGTERM: installs handlers that set ``event``, restores the old ones."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Until:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on)
        return self

    def _on(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def wait(self) -> None:
        while not self.event.wait(0.2):  # short waits: the handler runs between them
            pass


_print_lock = threading.Lock()


def say(line: str) -> None:
    """One whole line to stdout, flushed (callbacks print from several threads)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --- doors test ----------------------------------------------------------------------------------


class _DoorPrinter:
    """A DoorSink that prints what the door sees, instead of recording events."""

    def __init__(self) -> None:
        self.door: Any = None
        self._locked: bool | None = None

    def door_event(self, door_id: str, type_: str, fields: dict[str, object]) -> None:
        text = {"door.opened": "contact: door OPEN", "door.closed": "contact: door closed",
                "door.forced_open": "contact: (the agent would report this as forced open: opened while locked)",
                "door.held_open": f"contact: held open {fields.get('seconds')} s"}.get(type_, type_)
        say(text)

    def door_state_changed(self, door_id: str) -> None:
        if self.door is None:
            return
        locked = self.door.snapshot().locked
        if locked != self._locked:
            self._locked = locked
            say("relay: locked" if locked else "relay: UNLOCKED")

    def exit_pressed(self, door_id: str) -> None:
        say("exit button: pressed")


def cmd_doors_test(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    dcfg = next((d for d in cfg.doors if d.id == args.door), None)
    if dcfg is None:
        known = ", ".join(d.id for d in cfg.doors)
        raise ConfigError(str(args.config), "doors", f"no door {args.door!r} (doors: {known})")
    from .door import Door  # after the config is known good: gpiozero claims nothing before

    lock = RunLock.acquire(cfg.data_path, f"torwart-edge doors test {dcfg.id}")
    try:
        with _Until() as until:
            printer = _DoorPrinter()
            door = Door(dcfg, printer)
            try:
                printer.door = door
                printer.door_state_changed(dcfg.id)
                snap = door.snapshot()
                contact = "not fitted" if snap.open is None else ("OPEN" if snap.open else "closed")
                say(f"door {dcfg.id}: lock_pin={dcfg.lock_pin} fail={dcfg.fail} contact={contact} "
                    f"exit button={'pin ' + str(dcfg.exit_pin) if dcfg.exit_pin is not None else 'not fitted'}")
                say(f"pulsing the relay for {dcfg.unlock_seconds:g} s; then watching contact and exit button "
                    f"(Ctrl-C ends)")
                door.unlock(by="command")
                until.wait()
            finally:
                door.close()
        say("stopped; relay locked")
        return 0
    finally:
        lock.release()


# --- readers watch -------------------------------------------------------------------------------


def shown(credential: str) -> str:
    """The credential's type and the last 4 hex digits of its value; a PIN shows no digit."""
    kind, _, value = credential.partition(":")
    if kind == "pin":
        return "pin (digits hidden)"
    return f"{kind} …{value[-4:]}"


class _Reads:
    """A ReadSink onto a queue, read by the command's main loop."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[str, str, str]] = queue.Queue()

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.q.put(("read", reader_id, credential))

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        self.q.put(("error", reader_id, str(error)))


def cmd_readers_watch(args: argparse.Namespace) -> int:
    from .cache import CacheStore
    from .clock import ClockJudge, site_clock
    from .decide import decide
    from .statedb import StateDB

    cfg = config_mod.load(args.config)
    chosen = [r for r in cfg.readers if args.reader in (None, r.id)]
    if not chosen:
        known = ", ".join(r.id for r in cfg.readers) or "none configured"
        raise ConfigError(str(args.config), "readers", f"no reader {args.reader!r} (readers: {known})"
                          if args.reader else "no [[readers]] to watch")
    key = config_mod.site_key(cfg)
    lock = RunLock.acquire(cfg.data_path, "torwart-edge readers watch")
    try:
        data = cfg.data_path
        lockdown = False
        if (data / "state.db").exists():
            state = StateDB(data / "state.db")
            lockdown = bool(state.flag("lockdown", False))
            state.close()
        judge = ClockJudge(site_clock(cfg.policy.clock_trust, cfg.policy.chrony_socket), cfg.policy.clock_trust)
        sink = _Reads()
        with ExitStack() as stack, _Until() as until:
            cache = stack.enter_context(CacheStore(data / "cache.db", read_only=True)) \
                if (data / "cache.db").exists() else None
            for rc in chosen:
                try:
                    reader = make_reader(rc.settings, sink)
                    reader.start()
                except ReaderError as exc:
                    raise ReaderFailed(str(exc)) from exc
                stack.callback(reader.stop)
            say(f"watching {', '.join(r.id for r in chosen)}; cache "
                f"{'version ' + str(cache.version) if cache is not None else 'none yet'}"
                f"{', site in LOCKDOWN' if lockdown else ''} (Ctrl-C ends)")
            while not until.event.is_set():
                try:
                    what, rid, text = sink.q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if what == "error":
                    say(f"{rid}: reader error: {text}")
                    continue
                rcfg = next(r for r in chosen if r.id == rid)
                door = cfg.door(rcfg.door)
                entries, meta = cache.lookup_with_meta(cred_hash(key, text)) if cache is not None else ([], None)
                trusted, _ = judge.trusted(meta.newest_issued_at if meta is not None else 0)
                d = decide(entries, door=door.id, now=judge.source.time(),
                           cache_expires_at=meta.expires_at if meta is not None else None,
                           clock_trusted=trusted, mode="lockdown" if lockdown else "normal",
                           rate_limited=False, door_room=door.room)
                say(f"{rid} ({rcfg.direction}, door {door.id}): {shown(text)} → the cache would "
                    f"{'GRANT' if d.granted else 'deny'} ({d.reason})")
        say("stopped")
        return 0
    finally:
        lock.release()


# --- readers keyset ------------------------------------------------------------------------------


def cmd_readers_keyset(args: argparse.Namespace) -> int:
    from readers.osdp import OsdpConfig
    from readers.osdp_keyset import keyset

    cfg = config_mod.load(args.config, check_files=False)
    rcfg = next((r for r in cfg.readers if r.id == args.reader), None)
    if rcfg is None or not isinstance(rcfg.settings, OsdpConfig):
        i = next((i for i, r in enumerate(cfg.readers) if r.id == args.reader), None)
        raise ConfigError(args.config, "readers" if i is None else f"readers[{i}].type",
                          f"no osdp reader {args.reader!r} in [[readers]]")
    lock = RunLock.acquire(cfg.data_path, f"torwart-edge readers keyset {rcfg.id}")
    try:
        path = keyset(rcfg.settings, timeout=args.timeout)
    except ReaderError as exc:
        raise ReaderFailed(str(exc)) from exc
    finally:
        lock.release()
    print(f"reader {rcfg.id}: on a new Secure Channel key, written to {path}")
    return 0
