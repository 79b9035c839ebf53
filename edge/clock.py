"""Clock honesty: may booking windows be judged by this clock? (ARCHITECTURE.md)

A Raspberry Pi has no real-time clock: after a power cut it boots with the time it had at
shutdown (fake-hwclock) or 1970 until NTP answers. Judging a booking window by such a
clock would open doors for bookings long over. So booking entries are granted only while
the clock is *trusted* (``[policy] clock_trust``):

- ``ntp`` (default): NTP says the clock is synchronised AND it is not earlier than the
  newest hub-signed time the site has seen. Where chronyd runs, "NTP says" is *chrony's
  verdict* (edge/chrony.py): synchronised, with the source that set the clock last and the
  one selected now authenticated (NTS or a symmetric key); a clock chrony set from an
  unauthenticated server is not trusted.
  Where chronyd does not run, the kernel's NTP flag (adjtimex) decides as it always has,
  and the start is logged as "time is NOT authenticated".
- ``nts``: as ``ntp``, but only chrony's verdict counts: without chronyd the clock is
  never trusted. The stricter value is for fleets installed from the package (which
  brings chrony and its NTS configuration, firmware_configs/chrony/): there, a site
  whose chrony is gone (removed, replaced by systemd-timesyncd) must refuse bookings
  rather than fall back, unnoticed, to time that anyone on the LAN can forge.
- ``system`` (sites without NTP, e.g. a GPS clock set by other means): the clock is
  not earlier than the newest hub-signed time.

The newest signed time (``issued_at`` of caches and commands) is a lower bound for the real
time that a broker cannot forge; it comes from ``CacheStore.newest_issued_at``.

``SystemClock`` reads the NTP state through adjtimex(2) (read-only, no privileges needed)
and, when given a ``ChronyWatch`` (``site_clock``), chrony's cached verdict first;
``FakeClock`` is the working fake for tests and the demo; ``OffsetClock`` (system time plus
an offset from a file) lets the chaos run step a running agent's clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from .chrony import DEFAULT_SOCKET, Chronyc, ChronyWatch

log = logging.getLogger(__name__)

ClockPolicy = Literal["ntp", "nts", "system"]
POLICIES: tuple[ClockPolicy, ...] = ("ntp", "nts", "system")

#: ``timex.status`` bit: the kernel clock is not synchronised (linux/timex.h).
STA_UNSYNC = 0x0040
#: adjtimex return value: the clock is not synchronised (linux/timex.h).
TIME_ERROR = 5


class NtpState(NamedTuple):
    """What the time daemon says: ``synchronized`` is the verdict policy ``ntp`` uses,
    ``authenticated`` the one ``nts`` adds (chrony vouches for an authenticated source);
    ``detail`` names the source of truth ("" for fakes)."""

    synchronized: bool
    authenticated: bool
    detail: str


class ClockSource(Protocol):
    """Where the agent gets wall-clock time and the NTP state."""

    def time(self) -> float:
        """Seconds since the epoch (UTC), like ``time.time()``."""

    def ntp_synchronized(self) -> bool:
        """Whether the clock counts as NTP-synchronised (``ntp_state().synchronized``)."""

    def ntp_state(self) -> NtpState:
        """The NTP verdict and where it comes from (never blocks for long)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never steps (for intervals such as the denial limit):
        a wall-clock step, forwards or backwards, does not move it."""


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """``struct timex`` as the plain ``adjtimex`` symbol takes it (fields are C ``long``s
    on 32- and 64-bit Linux alike; 64-bit-time_t builds use a separate symbol)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        # 11 reserved ints in the kernel's struct, plus slack: the kernel must never
        # write past our buffer, whatever the libc's idea of the layout.
        ("_reserved", ctypes.c_int * 32),
    )


def synchronized_from(ret: int, status: int) -> bool:
    """Interpret an adjtimex(2) result: -1 (failure) and TIME_ERROR mean unsynchronised,
    as does the STA_UNSYNC bit in ``status``."""
    return ret >= 0 and ret != TIME_ERROR and not status & STA_UNSYNC


def _load_adjtimex() -> Callable[[ctypes._Pointer[_Timex]], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.POINTER(_Timex),)
    fn.restype = ctypes.c_int
    return fn


class SystemClock:
    """The real clock: ``time.time()``, and the NTP state from chrony's cached verdict
    (when ``chrony`` is given and chronyd runs) or else the kernel's via adjtimex(2).

    Where adjtimex is unavailable (not Linux, no libc), the clock counts as not
    synchronised; with policy ``ntp`` bookings are then refused, which is the safe side.
    """

    def __init__(self, chrony: ChronyWatch | None = None) -> None:
        self._adjtimex = _load_adjtimex()
        self._warned = False
        self.chrony = chrony

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def adjtimex(self) -> tuple[int, int] | None:
        """(return value, status) of a read-only adjtimex call; None if unavailable."""
        if self._adjtimex is None:
            return None
        tx = _Timex()  # modes = 0: read only, needs no privileges
        ret = self._adjtimex(ctypes.pointer(tx))
        if ret < 0:
            err = ctypes.get_errno()
            if not self._warned:
                log.warning("adjtimex failed (errno %d); the clock counts as not NTP-synchronised", err)
                self._warned = True
        return ret, tx.status

    def kernel_synchronized(self) -> bool:
        """The kernel's NTP flag (set by whichever NTP daemon runs, authenticated or not)."""
        result = self.adjtimex()
        if result is None:
            if not self._warned:
                log.warning("adjtimex is not available; the clock counts as not NTP-synchronised")
                self._warned = True
            return False
        return synchronized_from(*result)

    def ntp_state(self) -> NtpState:
        why = "kernel NTP flag, not authenticated"
        if self.chrony is not None:
            verdict = self.chrony.verdict()
            if verdict.present:
                return NtpState(verdict.trusted, verdict.trusted, verdict.detail)
            why = f"{verdict.detail}; {why}"
        synced = self.kernel_synchronized()
        return NtpState(synced, False, f"{why}: {'synchronised' if synced else 'not synchronised'}")

    def ntp_synchronized(self) -> bool:
        return self.ntp_state().synchronized


def site_clock(policy: ClockPolicy, chrony_socket: str = DEFAULT_SOCKET) -> SystemClock:
    """The clock a site runs on: for ``ntp`` and ``nts`` backed by chrony's verdict."""
    return SystemClock(None if policy == "system" else ChronyWatch(Chronyc(chrony_socket)))


class FakeClock:
    """A settable clock for tests and the demo: set, step forwards or backwards, and set
    the NTP flag (and whether that time counts as authenticated, for policy ``nts``).
    Thread-safe (a demo may step it from another thread)."""

    def __init__(self, t: float = 1_700_000_000.0, *, synchronized: bool = True,
                 authenticated: bool = False) -> None:
        self._lock = threading.Lock()
        self._t = float(t)
        self._mono = 0.0
        self._synced = synchronized
        self._authenticated = authenticated

    def time(self) -> float:
        with self._lock:
            return self._t

    def ntp_synchronized(self) -> bool:
        with self._lock:
            return self._synced

    def ntp_state(self) -> NtpState:
        with self._lock:
            return NtpState(self._synced, self._synced and self._authenticated, "")

    def monotonic(self) -> float:
        """Moves with every forward step or ``set`` and never goes back: the fake stands
        for time passing, whereas a backward step is a clock correction."""
        with self._lock:
            return self._mono

    def set(self, t: float) -> None:
        with self._lock:
            self._mono += max(0.0, float(t) - self._t)
            self._t = float(t)

    def advance(self, seconds: float) -> None:
        """Step by ``seconds``; negative steps the clock backwards."""
        with self._lock:
            self._t += seconds
            self._mono += max(0.0, seconds)

    def set_synchronized(self, synchronized: bool) -> None:
        with self._lock:
            self._synced = synchronized

    def set_authenticated(self, authenticated: bool) -> None:
        with self._lock:
            self._authenticated = authenticated


class OffsetClock:
    """The system clock plus an offset read from a file: a test and chaos hook that steps
    one agent's clock without touching the machine's (``TORWART_CLOCK_OFFSET_FILE``, read
    by ``torwart-edge run``; never set it on a real site).

    The file holds one number, the offset in seconds (``-3600``: an hour behind); a missing
    or empty file means 0. It is re-read whenever its identity or mtime changes (write a
    temp file and rename it over, so that a reader never sees half a number); an
    unreadable value keeps the last good offset and is logged once per change.
    ``synchronized`` forces the NTP verdict (authenticated too); None asks ``base``.
    ``monotonic`` ignores the offset: steps are clock corrections, not time passing.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronized: bool | None = None,
                 base: SystemClock | None = None) -> None:
        self.path = Path(path)
        self._synced = synchronized
        self._base = base or SystemClock()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._offset = 0.0

    @property
    def offset(self) -> float:
        """The offset in force (after re-reading the file if it changed)."""
        self._refresh()
        return self._offset

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            log.warning("clock offset file %s: %s; keeping offset %+.0f s", self.path, exc, self._offset)
            return
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            if stamp is None:
                text = ""
            else:
                try:
                    text = self.path.read_text(encoding="ascii").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    log.warning("clock offset file %s: %s; keeping offset %+.0f s", self.path, exc, self._offset)
                    return
            try:
                offset = float(text) if text else 0.0
                if not math.isfinite(offset):
                    raise ValueError("not a finite number")
            except ValueError as exc:
                log.warning("clock offset file %s: %r is not a number of seconds (%s); keeping offset %+.0f s",
                            self.path, text[:40], exc, self._offset)
                return
            if offset != self._offset:
                log.warning("test clock: offset now %+.3f s (from %s)", offset, self.path)
            self._offset = offset

    def time(self) -> float:
        self._refresh()
        return self._base.time() + self._offset

    def ntp_synchronized(self) -> bool:
        return self._base.ntp_synchronized() if self._synced is None else self._synced

    def ntp_state(self) -> NtpState:
        if self._synced is None:
            return self._base.ntp_state()
        return NtpState(self._synced, self._synced, "forced by TORWART_CLOCK_NTP")

    def monotonic(self) -> float:
        return self._base.monotonic()


def _iso(t: float) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f}"


class ClockJudge:
    """Decides whether the clock is trusted, and reports changes once.

    ``trusted(newest)`` is the current verdict with a human-readable detail (for the
    ``clock.trusted`` / ``clock.untrusted`` event). ``check(newest)`` returns the event
    type when the verdict changed since the last check (the first check always reports),
    else None. Used from the agent's main loop.
    """

    def __init__(self, source: ClockSource, policy: ClockPolicy = "ntp") -> None:
        if policy not in POLICIES:
            raise ValueError(f"clock policy must be 'ntp', 'nts' or 'system', not {policy!r}")
        self.source = source
        self.policy: ClockPolicy = policy
        self._state: bool | None = None
        self._detail = "not checked yet"

    @property
    def state(self) -> bool | None:
        """The verdict of the last ``check`` (None before the first)."""
        return self._state

    @property
    def detail(self) -> str:
        """The detail of the last ``check``."""
        return self._detail

    def trusted(self, newest_issued_at: int) -> tuple[bool, str]:
        now = self.source.time()
        basis = "system clock (no NTP required)"
        if self.policy != "system":
            ntp = self.source.ntp_state()
            why = f"{ntp.detail}; " if ntp.detail else ""
            if not ntp.synchronized:
                return False, f"NTP is not synchronised ({why}clock reads {_iso(now)})"
            if self.policy == "nts" and not ntp.authenticated:
                return False, f"time is not authenticated ({why}clock reads {_iso(now)})"
            basis = f"NTP synchronised ({ntp.detail})" if ntp.detail else "NTP synchronised"
        if now < newest_issued_at:
            return False, (
                f"clock reads {_iso(now)}, {newest_issued_at - now:.0f} s before the newest signed time "
                f"{_iso(newest_issued_at)}"
            )
        return True, f"{basis}; clock reads {_iso(now)}, not before the newest signed time {_iso(newest_issued_at)}"

    def check(self, newest_issued_at: int) -> str | None:
        ok, detail = self.trusted(newest_issued_at)
        self._detail = detail
        if ok == self._state:
            return None
        self._state = ok
        event = "clock.trusted" if ok else "clock.untrusted"
        log.info("%s: %s", event, detail)
        return event


def describe(source: ClockSource, policy: ClockPolicy) -> str:
    """One line for ``torwart-edge check``: the policy, the source of truth and its verdict
    now (the comparison with the newest signed time comes on top at run time)."""
    if policy == "system":
        return "clock_trust=system: the system clock, trusted unless behind the newest signed time (no NTP)"
    ntp = source.ntp_state()
    ok = ntp.synchronized and (policy == "ntp" or ntp.authenticated)
    return f"clock_trust={policy}: {ntp.detail or 'NTP flag'} -> {'trusted' if ok else 'NOT trusted'} now"
