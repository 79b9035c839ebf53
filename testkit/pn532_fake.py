"""A fake PN532 in HSU mode on the master end of a pty: a reader under test opens
``fake.path`` with pyserial and talks to it like to the real module.

The frame handling here is written independently of ``readers.pn532_codec`` on
purpose, so that a bug in the codec cannot cancel itself out in the tests. It answers
GetFirmwareVersion, SAMConfiguration, RFConfiguration and InListPassiveTarget with an
ACK followed by the response; a frame with a bad checksum gets a NACK, an unknown
command an error frame, a NACK from the host the last response again.

InListPassiveTarget answers the present card's UID. Without a card it depends on
RFConfiguration item 0x05 (MaxRetries), as on the real module (UM0701-02 §7.3.1): with
a finite MxRtyPassiveActivation it answers NbTg = 0; with 0xFF, the value after power-on,
it keeps polling and answers only when a card enters the field, until the host sends
another command or an ACK frame (abort). A host that never sets MaxRetries therefore
waits for a card, and one that relies on NbTg = 0 without setting it is caught here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading

from .serialpty import PtyPort

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"


def response_frame(data: bytes) -> bytes:
    """A PN532 → host normal information frame (TFI D5) carrying ``data``."""
    body = b"\xd5" + data
    return b"\x00\x00\xff" + bytes([len(body), (0x100 - len(body)) & 0xFF]) + body + bytes(
        [(0x100 - sum(body) % 0x100) & 0xFF, 0x00])


def target_response(uid: bytes) -> bytes:
    """InListPassiveTarget response data for one 106 kbps type A target with ``uid``."""
    sens_res = b"\x00\x44" if len(uid) > 4 else b"\x00\x04"  # the UID size bits of ATQA
    sel_res = b"\x00" if len(uid) == 7 else b"\x08"
    return b"\x4b\x01\x01" + sens_res + sel_res + bytes([len(uid)]) + uid


class FakePn532:
    """``FakePn532()`` makes its own pty (or takes ``port``) and starts answering at once.

    ``present(uid)``/``remove()`` put a card in or out of the field; ``mute()`` stops
    answering (a hung module), ``unmute()`` resumes; ``corrupt(n)`` spoils the data
    checksum of the next ``n`` frames it sends; ``inject(raw)`` puts raw bytes on the
    line. ``commands`` counts command codes seen (``commands[0x4A]`` = polls answered
    or not), ``nacks_sent``, ``nacks_received``. ``stop()`` ends the thread;
    ``unplug()`` also closes the pty, as pulling the cable does.
    """

    def __init__(self, port: PtyPort | None = None, *, firmware: bytes = b"\x32\x01\x06\x07") -> None:
        self.port = port or PtyPort()
        self.path = self.port.path
        self.firmware = firmware
        self.commands: collections.Counter[int] = collections.Counter()
        self.nacks_sent = 0
        self.nacks_received = 0
        self.bad_frames = 0
        self._uid: bytes | None = None
        self._muted = False
        self._corrupt = 0
        self._last: bytes | None = None
        self._max_passive = 0xFF  # RFConfiguration MxRtyPassiveActivation: 0xFF = forever
        self._polling = False  # an InListPassiveTarget waits for a card (retries forever)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._run, name="fake-pn532", daemon=True)
        self._thread.start()

    # --- what a test does -----------------------------------------------------------

    def present(self, uid: bytes) -> None:
        with self._lock:
            self._uid = bytes(uid)
            waiting, self._polling = self._polling, False
        if waiting:  # the poll that has been waiting finds the card now
            self._respond(target_response(bytes(uid)))

    def remove(self) -> None:
        with self._lock:
            self._uid = None

    def mute(self) -> None:
        with self._lock:
            self._muted = True

    def unmute(self) -> None:
        with self._lock:
            self._muted = False

    def corrupt(self, n: int = 1) -> None:
        with self._lock:
            self._corrupt += n

    def inject(self, raw: bytes) -> None:
        self._send_raw(raw)

    @property
    def polls(self) -> int:
        with self._lock:
            return self.commands[0x4A]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def unplug(self) -> None:
        self.stop()
        self.port.unplug()

    def __enter__(self) -> FakePn532:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unplug()

    # --- the device -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.port.master], [], [], 0.05)
                if not r:
                    continue
                data = os.read(self.port.master, 4096)
            except (OSError, ValueError):
                return  # the pty was closed under us
            self._buf += data
            self._parse()

    def _parse(self) -> None:
        buf = self._buf
        while True:
            i = buf.find(b"\x00\xff")
            if i < 0:
                del buf[:-1]
                return
            del buf[:i]
            if len(buf) < 4:
                return
            length, lcs = buf[2], buf[3]
            if length == 0x00 and lcs == 0xFF:  # host ACK: abort the running command
                del buf[:4]
                with self._lock:
                    self._polling = False
                continue
            if length == 0xFF and lcs == 0x00:  # host NACK: send the last response again
                del buf[:4]
                with self._lock:
                    self.nacks_received += 1
                    last = self._last
                if last is not None:
                    self._send(last)
                continue
            if (length + lcs) % 0x100 != 0:
                del buf[:1]
                continue
            if len(buf) < 4 + length + 1:
                return
            body = bytes(buf[4:4 + length])
            dcs = buf[4 + length]
            del buf[:4 + length + 1]
            if (sum(body) + dcs) % 0x100 != 0 or body[0] != 0xD4:
                with self._lock:
                    self.bad_frames += 1
                    self.nacks_sent += 1
                self._send_raw(NACK)
                continue
            self._command(body[1:])

    def _command(self, data: bytes) -> None:
        with self._lock:
            if not data:
                return
            code = data[0]
            self.commands[code] += 1
            self._polling = False  # a new command ends a waiting poll
            if self._muted:
                return
            uid = self._uid
            if code == 0x32 and len(data) >= 5 and data[1] == 0x05:  # MaxRetries
                self._max_passive = data[4]
            forever = self._max_passive == 0xFF
        if code == 0x02:
            reply = b"\x03" + self.firmware
        elif code == 0x14:
            reply = b"\x15"
        elif code == 0x32:
            reply = b"\x33"
        elif code == 0x4A:
            with self._lock:  # decided and acknowledged under the lock: present() answers after the ACK
                uid = self._uid
                if uid is None and forever:
                    self._polling = True
                    self._send_raw(ACK)  # the answer comes with a card
                    return
            reply = target_response(uid) if uid is not None else b"\x4b\x00"
        else:
            self._send_raw(ACK + ERROR_FRAME)
            return
        self._send_raw(ACK)
        self._respond(reply)

    def _respond(self, reply: bytes) -> None:
        frame = response_frame(reply)
        with self._lock:
            self._last = frame
        self._send(frame)

    def _send(self, frame: bytes) -> None:
        with self._lock:
            spoil = self._corrupt > 0
            if spoil:
                self._corrupt -= 1
        if spoil:
            frame = frame[:-2] + bytes([(frame[-2] + 1) & 0xFF]) + frame[-1:]
        self._send_raw(frame)

    def _send_raw(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # unplugged: the reader will notice
            self.port.write(data)
