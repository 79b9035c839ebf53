"""Errors of the reader drivers: one base, one subclass per case an installer must tell apart.

``str(error)`` is the text for the installer's log or event (at most about 200 characters
for device errors); the class says what happened, so that a caller (the edge's events,
the hub's desk enrollment) picks its advice by type, never by matching the text:

- ``ReaderConfigError``: the reader's settings lack or misstate something (``key`` names it);
- ``DeviceNotFound``: no such device (unplugged, a wrong path);
- ``DeviceAccessDenied``: the device exists but this user may not open it;
- ``DeviceBusy``: another process holds the device (its exclusive lock);
- ``WrongDevice``: the path is not the kind of device the reader needs (not a serial port:
  ENOTTY, a plain file; a sim path that is not a FIFO);
- ``ProtocolError``: the device is there but does not answer like the reader (a PN532
  without a firmware answer, an OSDP reader refusing Secure Channel or a new key);
- ``DeviceFailed``: any other device failure (an I/O error, a port gone mid-session).

``classify(exc)`` turns an OSError / pyserial / termios failure into one of these by its
errno (pyserial sometimes keeps the errno only on the chained exception it wraps).
"""

from __future__ import annotations

import errno
import termios


class ReaderError(Exception):
    """Base of every error the reader drivers raise on purpose."""


class ReaderConfigError(ReaderError):
    """A reader's settings lack or misstate something; ``key`` is the setting's name as in
    ``[[readers]]`` (e.g. ``port``), ``message`` says what is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class DeviceNotFound(ReaderError):
    """No such device: unplugged, or a wrong path (ENOENT, ENODEV, ENXIO)."""


class DeviceAccessDenied(ReaderError):
    """The device exists but this user may not open it (EACCES, EPERM)."""


class DeviceBusy(ReaderError):
    """Another process holds the device: its exclusive lock (EAGAIN on the lock), or EBUSY."""


class WrongDevice(ReaderError):
    """The path is not the kind of device the reader needs (not a tty: ENOTTY; a plain file)."""


class ProtocolError(ReaderError):
    """The device is there but does not answer like the configured reader. ``advice`` is
    what an installer should check (may be empty)."""

    def __init__(self, message: str, *, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


class DeviceFailed(ReaderError):
    """Any other device failure (an I/O error, the port gone in the middle of a session)."""


_BY_ERRNO: dict[int, type[ReaderError]] = {
    errno.ENOENT: DeviceNotFound,
    errno.ENODEV: DeviceNotFound,
    errno.ENXIO: DeviceNotFound,
    errno.EACCES: DeviceAccessDenied,
    errno.EPERM: DeviceAccessDenied,
    errno.EBUSY: DeviceBusy,
    errno.EAGAIN: DeviceBusy,  # an exclusive lock (flock LOCK_NB) another process holds
    errno.ENOTTY: WrongDevice,
}


def _errno(exc: BaseException) -> int | None:
    """The errno of ``exc`` or of an exception it wraps (pyserial raises a SerialException
    without one from a termios.error that has it)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        code = getattr(cur, "errno", None)
        if isinstance(code, int):
            return code
        if isinstance(cur, termios.error) and cur.args and isinstance(cur.args[0], int):
            return cur.args[0]  # termios.error(25, 'Inappropriate ioctl for device')
        cur = cur.__cause__ or cur.__context__
    return None


def describe(exc: BaseException) -> str:
    """The exception's text (or its class name), cut to 200 characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def classify(exc: BaseException, message: str | None = None) -> ReaderError:
    """The typed ReaderError for a device failure ``exc`` (itself if it already is one),
    with ``message`` as its text (default: ``describe(exc)``), chained to ``exc``."""
    if isinstance(exc, ReaderError):
        return exc
    code = _errno(exc)
    kind = _BY_ERRNO.get(code, DeviceFailed) if code is not None else DeviceFailed
    error = kind(message if message is not None else describe(exc))
    error.__cause__ = exc
    return error
