"""chrony's verdict on the clock: synchronised, and to an *authenticated* source?

The kernel's NTP flag (adjtimex) says only that some daemon disciplines the clock; any
NTP server the Pi asks can set it, including one forged by someone on the hall's LAN.
chrony knows more: which source it selected and whether that source is authenticated
(NTS, RFC 8915, or a symmetric key). This module asks chronyd through ``chronyc`` and
reduces its answer to one verdict (``ChronyVerdict``):

- **trusted**: ``tracking`` reports a leap status other than "Not synchronised", a
  reference that is a real source (not chrony's ``local`` clock, refid 7F7F0101) and an
  error bound (root delay / 2 + root dispersion) under ``MAX_ROOT_DISTANCE``; ``authdata``
  lists that reference with mode ``NTS`` or ``SK``; and the source ``sources`` shows as
  selected (``*``), if any, is authenticated too. So what set the clock last and what
  will set it next are both authenticated: an NTS source's measurements are accepted only
  when they authenticate. With the hall's internet down, chrony selects nothing but keeps
  its reference: the clock stays trusted while chrony's own error bound stays small (it
  grows by a few parts per million: days), as a free-running clock nobody can set.
- **untrusted**: anything else, with a detail saying why: not synchronised, the selected
  source is not authenticated, chronyc timed out or printed something unreadable, or
  chronyd refuses to answer this user.
- **absent**: chronyd is not running on this machine (no command socket, or no chronyc);
  the caller decides what that means (edge/clock.py: policy ``ntp`` falls back to the
  kernel's flag, policy ``nts`` stays untrusted).

Each command is one ``chronyc -c -n -h SOCKET CMD`` (CSV, addresses unresolved) with a
short timeout; output is parsed by field, never by layout. ``authdata`` is a privileged
command in chronyd (only over its Unix socket), so the agent's user must be able to use
``/run/chrony/chronyd.sock``: on Debian that means group ``_chrony`` and a command-socket
directory of mode 0770 (firmware_configs/chrony/README.md). A user who cannot is told so
in the verdict's detail and is *not* trusted: a misinstalled site refuses bookings rather
than quietly falling back to unauthenticated time.

``ChronyWatch`` caches the verdict so that a badge decision never waits for chronyc: the
first ``verdict()`` reads synchronously (the agent's start), later calls return the cached
verdict and refresh it on a background thread once it is ``refresh_seconds`` old; a
verdict that could not be refreshed for ``stale_seconds`` is untrusted. Every change of
the verdict's detail is logged once.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: chronyd's command socket as Debian (and chrony's default build) places it.
DEFAULT_SOCKET = "/run/chrony/chronyd.sock"
#: ``authdata`` modes that authenticate a source: Network Time Security, symmetric key.
AUTHENTICATED_MODES = frozenset({"NTS", "SK"})
#: The reference id chrony reports while it serves its own clock (the ``local`` directive).
LOCAL_REFID = "7F7F0101"
#: Seconds: beyond this error bound (chrony's root distance) the clock is no longer trusted.
MAX_ROOT_DISTANCE = 5.0
#: Where the hint for a user who may not ask chronyd points.
ACCESS_HINT = ("the agent's user needs group _chrony and chronyd's socket directory mode 0770 "
               "(firmware_configs/chrony/README.md)")


class ChronyOutputError(ValueError):
    """chronyc printed something that is not the CSV this module expects."""


@dataclass(frozen=True)
class ChronyVerdict:
    """What chrony says about the clock (see the module docstring)."""

    present: bool
    """chronyd runs here (its command socket exists); False: the caller's fallback applies."""
    trusted: bool
    """Synchronised to a selected, authenticated source."""
    detail: str
    """Why, in a few words (for logs, events and ``torwart-edge check``)."""
    source: str | None = None
    """The selected source's address, when there is one."""
    auth: str | None = None
    """Its ``authdata`` mode: NTS, SK or - (none)."""


def absent(detail: str) -> ChronyVerdict:
    return ChronyVerdict(present=False, trusted=False, detail=detail)


def untrusted(detail: str, source: str | None = None, auth: str | None = None) -> ChronyVerdict:
    return ChronyVerdict(present=True, trusted=False, detail=detail, source=source, auth=auth)


@dataclass(frozen=True)
class Tracking:
    refid: str
    address: str
    stratum: int
    root_distance: float
    leap: str


def _rows(command: str, text: str, min_fields: int) -> list[list[str]]:
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    for row in rows:
        if len(row) < min_fields:
            raise ChronyOutputError(f"chronyc {command}: unreadable output {','.join(row)[:60]!r}")
    return rows


def parse_tracking(text: str) -> Tracking:
    """``chronyc -c -n tracking``: one line of (at least) 14 fields; refid, address,
    stratum, root delay and dispersion (11th, 12th) and leap status (14th) are used."""
    rows = _rows("tracking", text, 14)
    if len(rows) != 1:
        raise ChronyOutputError(f"chronyc tracking: expected one line, got {len(rows)}")
    f = rows[0]
    try:
        int(f[0], 16)
        stratum = int(f[2])
        distance = float(f[10]) / 2 + float(f[11])
    except ValueError:
        raise ChronyOutputError(f"chronyc tracking: unreadable output {','.join(f)[:60]!r}") from None
    if len(f[0]) != 8:
        raise ChronyOutputError(f"chronyc tracking: unreadable reference id {f[0][:20]!r}")
    return Tracking(refid=f[0].upper(), address=f[1], stratum=stratum, root_distance=distance, leap=f[13].strip())


def parse_sources(text: str) -> list[tuple[str, str, str]]:
    """``chronyc -c -n sources``: (mode, state, address) per source; mode ``^`` server,
    ``=`` peer, ``#`` reference clock; state ``*`` is the selected one."""
    out = []
    for f in _rows("sources", text, 10):
        if f[0] not in ("^", "=", "#") or len(f[1]) != 1:
            raise ChronyOutputError(f"chronyc sources: unreadable output {','.join(f)[:60]!r}")
        out.append((f[0], f[1], f[2]))
    return out


def parse_authdata(text: str) -> dict[str, str]:
    """``chronyc -c -n authdata``: address → mode (NTS, SK, -) for every NTP source."""
    out = {}
    for f in _rows("authdata", text, 10):
        if not f[0] or not f[1]:
            raise ChronyOutputError(f"chronyc authdata: unreadable output {','.join(f)[:60]!r}")
        out[f[0]] = f[1]
    return out


def judge(tracking: Tracking, sources: list[tuple[str, str, str]], auth: dict[str, str]) -> ChronyVerdict:
    """The verdict from the three reports (pure; the rules are in the module docstring)."""
    ref = tracking.address
    if tracking.leap == "Not synchronised" or tracking.refid == "00000000" or not ref:
        return untrusted("chrony is not synchronised")
    if tracking.refid == LOCAL_REFID:
        return untrusted("chrony serves its own local clock, not a time source")
    for mode, state, addr in sources:
        if state != "*":
            continue
        if mode == "#":
            return untrusted(f"chrony follows reference clock {addr}, which is not authenticated", addr)
        if auth.get(addr) not in AUTHENTICATED_MODES:
            return untrusted(f"chrony's selected source {addr} is not authenticated "
                             f"(mode {auth.get(addr) or 'unknown'})", addr, auth.get(addr))
    how = auth.get(ref)
    if how not in AUTHENTICATED_MODES:
        return untrusted(f"chrony's reference {ref} is not authenticated (mode {how or 'unknown'})", ref, how)
    if not tracking.root_distance <= MAX_ROOT_DISTANCE:
        return untrusted(f"chrony's error bound exceeds {MAX_ROOT_DISTANCE:g} s (no update from {ref} for too long)",
                         ref, how)
    return ChronyVerdict(present=True, trusted=True, detail=f"chrony synchronised to {ref} ({how})",
                         source=ref, auth=how)


class ChronycFailed(Exception):
    """chronyc did not answer in time, or answered with an error."""


class Chronyc:
    """Asks one chronyd, through ``chronyc``, for its verdict. ``read()`` blocks for at most
    three times ``timeout`` and never raises."""

    def __init__(self, socket: str = DEFAULT_SOCKET, *, chronyc: str | None = None, timeout: float = 2.0) -> None:
        self.socket = socket
        self.chronyc = chronyc
        self.timeout = timeout

    def _binary(self) -> str | None:
        if self.chronyc is not None:
            return self.chronyc if os.access(self.chronyc, os.X_OK) else None
        return shutil.which("chronyc") or next(
            (p for p in ("/usr/bin/chronyc", "/usr/sbin/chronyc") if os.access(p, os.X_OK)), None)

    def _run(self, binary: str, command: str) -> str:
        try:
            done = subprocess.run([binary, "-c", "-n", "-h", self.socket, command], stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ChronycFailed(f"chronyc {command} did not answer within {self.timeout:g} s") from None
        out = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            said = (done.stderr.decode("utf-8", "replace") + out).strip().splitlines()
            first = said[0][:80] if said else f"exit status {done.returncode}"
            raise ChronycFailed(f"chronyc {command} failed: {first}"
                                + (f"; {ACCESS_HINT}" if first.startswith("501") else ""))
        return out

    def read(self) -> ChronyVerdict:
        binary = self._binary()
        if binary is None:
            return absent(f"chronyc is not installed ({self.chronyc or 'chronyc'} not found)")
        try:
            st = os.stat(self.socket)
        except (FileNotFoundError, NotADirectoryError):
            return absent(f"chronyd is not running (no command socket {self.socket})")
        except PermissionError:
            return untrusted(f"chronyd's command socket {self.socket} is not accessible: {ACCESS_HINT}")
        except OSError as exc:
            return untrusted(f"chronyd's command socket {self.socket}: {exc.strerror or exc}")
        if not stat.S_ISSOCK(st.st_mode):
            return untrusted(f"{self.socket} is not a socket")
        try:
            tracking = parse_tracking(self._run(binary, "tracking"))
            sources = parse_sources(self._run(binary, "sources"))
            auth = parse_authdata(self._run(binary, "authdata"))
        except (ChronycFailed, ChronyOutputError) as exc:
            return untrusted(str(exc))
        except OSError as exc:
            return untrusted(f"cannot run {binary}: {exc.strerror or exc}")
        return judge(tracking, sources, auth)


class ChronyWatch:
    """chrony's verdict, cached: ``verdict()`` never waits for chronyc after the first call
    (see the module docstring). Thread-safe."""

    def __init__(self, reader: Chronyc, *, refresh_seconds: float = 5.0, stale_seconds: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.reader = reader
        self.refresh_seconds = refresh_seconds
        self.stale_seconds = stale_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._verdict: ChronyVerdict | None = None
        self._at = 0.0
        self._refreshing = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _refresher(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.refresh()

    def refresh(self) -> ChronyVerdict:
        """Ask chronyd now (blocking, bounded by the reader's timeouts) and cache the answer."""
        try:
            verdict = self.reader.read()
        except Exception as exc:  # a bug here must cost trust, never the agent
            log.exception("reading chrony's verdict failed")
            verdict = untrusted(f"reading chrony's verdict failed: {exc!r}"[:160])
        with self._lock:
            before, self._verdict, self._at = self._verdict, verdict, self._monotonic()
            self._refreshing = False
        if before is None or before.detail != verdict.detail:
            self._log(verdict)
        return verdict

    @staticmethod
    def _log(v: ChronyVerdict) -> None:
        if v.trusted:
            log.info("time is authenticated: %s", v.detail)
        elif not v.present:
            log.warning("time is NOT authenticated: %s", v.detail)
        else:
            log.warning("chrony does not vouch for the clock: %s", v.detail)

    def verdict(self) -> ChronyVerdict:
        with self._lock:
            cached, age = self._verdict, self._monotonic() - self._at
            start = cached is not None and age >= self.refresh_seconds and not self._refreshing
            if start:
                self._refreshing = True
        if cached is None:
            return self.refresh()
        if start:
            # One long-lived refresher, woken here: starting a thread per refresh would cost
            # the badge path that asked a GIL hand-off of milliseconds (README, design).
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresher, name="chrony-verdict", daemon=True)
                self._thread.start()
        if age > self.stale_seconds:
            return untrusted(f"chrony's verdict could not be refreshed for {age:.0f} s")
        return cached
