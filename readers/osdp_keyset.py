"""Give an OSDP reader its own Secure Channel key (``torwart-edge readers keyset`` runs it).

A factory-fresh reader is in *install mode*: it accepts Secure Channel with the default
key SCBK-D and takes a new key from the first control panel that sends one (osdp_KEYSET).
This command connects with SCBK-D (or, when ``scbk_file`` already exists, with the key in
it: rotation), sends a fresh random key, waits until libosdp has re-established Secure
Channel with the new key (proof that the reader took it), then moves the key into
``scbk_file`` (0600). The new key is written to ``scbk_file.new`` *before* it is sent, so
that a failure between the reader taking the key and the file being replaced never loses
it. It opens the port exclusively: it refuses to run beside a running agent (DeviceBusy;
the edge's command also takes the site's run lock).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import osdp_sys
import serial
from osdp import Command, LibFlag, LogLevel, PDInfo

from wire.errors import KeyFileError
from wire.keys import read_scbk_file, write_scbk_file

from .errors import ProtocolError, ReaderConfigError, classify
from .osdp import OsdpConfig
from .osdp_link import FrameScanner, SerialChannel

log = logging.getLogger(__name__)

#: The OSDP default Secure Channel Base Key of a reader in install mode (OSDP 2.2 §D.1).
SCBK_D = bytes(range(0x30, 0x40))
KEY_TYPE_SCBK = 1


def keyset(cfg: OsdpConfig, *, timeout: float = 10.0) -> Path:
    """Put the reader of ``cfg`` on a new random key; returns the key file written.
    Raises a ReaderError (the reader did not take it; the old key file, if any, unchanged):
    ReaderConfigError (no port, address or scbk_file; an unreadable key file), DeviceBusy
    (the port is held, e.g. by the agent) or another device error, ProtocolError (no
    Secure Channel, the key refused)."""
    if not isinstance(cfg, OsdpConfig) or not cfg.port or cfg.address is None or not cfg.scbk_file:
        raise ReaderConfigError("type", f"reader {cfg.id}: keyset needs an osdp reader with port, address and "
                                        "scbk_file")
    target = Path(cfg.scbk_file)
    try:
        current = read_scbk_file(target) if target.exists() else None
    except KeyFileError as exc:
        raise ReaderConfigError("scbk_file", f"reader {cfg.id}: {exc.args[0]}") from None
    pending = target.with_name(target.name + ".new")
    new = os.urandom(16)
    try:
        ser = serial.serial_for_url(cfg.port, baudrate=cfg.baudrate or 9600, timeout=0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise classify(exc, f"reader {cfg.id}: cannot open {cfg.port} (is the agent running on it?): {exc}") from None
    try:
        return _keyset(cfg, ser, current, new, pending=pending, target=target, timeout=timeout)
    finally:
        ser.close()


def _keyset(cfg: OsdpConfig, ser: serial.Serial, current: bytes | None, new: bytes, *, pending: Path,
            target: Path, timeout: float) -> Path:
    channel = SerialChannel(ser, FrameScanner())
    osdp_sys.set_loglevel(LogLevel.Debug if log.isEnabledFor(logging.DEBUG) else LogLevel.Emergency)
    flags = [LibFlag.EnforceSecure] + ([] if current is not None else [LibFlag.InstallMode])
    ctx = osdp_sys.ControlPanel([PDInfo(cfg.address, channel, scbk=current or SCBK_D, name=cfg.id,
                                        flags=flags).get()])
    done: list[int] = []

    def on_completion(pd: int, cmd: dict[str, Any], status: int) -> None:
        if cmd.get("command") == Command.Keyset:
            done.append(status)

    ctx.set_event_callback(lambda pd, ev: 0)
    ctx.set_command_completion_callback(on_completion)
    which = "its current key" if current is not None else "the default key (install mode)"
    if not _until(ctx, lambda: bool(ctx.sc_status() & 1), timeout):
        raise ProtocolError(f"reader {cfg.id}: no Secure Channel with {which} at address {cfg.address} on "
                          f"{cfg.port}" + ("" if current is not None else
                                           "; is it factory-fresh (or reset to install mode)?"))
    write_scbk_file(pending, new)  # before sending: a reader that took it must never be lost
    if not ctx.submit_command(0, {"command": Command.Keyset, "type": KEY_TYPE_SCBK, "data": new}):
        pending.unlink(missing_ok=True)
        raise ProtocolError(f"reader {cfg.id}: libosdp refused the keyset command")
    if not _until(ctx, lambda: bool(done), timeout):
        # No answer is not a refusal: the reader may have taken the key and its reply got
        # lost. Only the new key would then open it, so it stays where the operator finds it.
        raise ProtocolError(f"reader {cfg.id}: no answer to the new key within {timeout:g} s; it may have taken "
                            f"it: the new key is kept in {pending} ({target} unchanged)")
    if done[0] != 0:
        pending.unlink(missing_ok=True)
        raise ProtocolError(f"reader {cfg.id}: the reader did not accept the new key; {target} unchanged")
    # libosdp restarts Secure Channel with the new key: up again is the proof the reader has it.
    time.sleep(0.05)
    if not _until(ctx, lambda: bool(ctx.sc_status() & 1), timeout):
        raise ProtocolError(f"reader {cfg.id}: the reader took a new key but Secure Channel with it did not come "
                          f"up; the key is kept in {pending}")
    os.replace(pending, target)
    return target


def _until(ctx: Any, cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ctx.refresh()
        if cond():
            return True
        time.sleep(0.01)
    return False
