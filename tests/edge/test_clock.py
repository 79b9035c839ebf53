"""Clock honesty: the judge under both policies, a clock stepping backwards and forwards,
transitions reported once, and the kernel's NTP state read through adjtimex(2)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from edge.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    ClockJudge,
    ClockSource,
    FakeClock,
    OffsetClock,
    SystemClock,
    synchronized_from,
)

SIGNED = 1_700_000_000  # the newest hub-signed time the site has seen


def test_fake_clock_steps_both_ways_and_sets_the_ntp_flag() -> None:
    c = FakeClock(100.0, synchronized=False)
    assert (c.time(), c.ntp_synchronized()) == (100.0, False)
    c.advance(50)
    c.advance(-120)
    assert c.time() == 30.0
    c.set(5000.5)
    c.set_synchronized(True)
    assert (c.time(), c.ntp_synchronized()) == (5000.5, True)


def test_every_clock_is_a_clock_source(tmp_path: Path) -> None:
    sources: list[ClockSource] = [FakeClock(), SystemClock(), OffsetClock(tmp_path / "offset")]
    assert all(isinstance(s.ntp_synchronized(), bool) for s in sources)


@pytest.mark.parametrize(("now", "synced", "ntp", "system"), [
    (SIGNED + 10, True, True, True),
    (SIGNED, True, True, True),            # exactly the signed time is not earlier
    (SIGNED - 1, True, False, False),      # earlier than something the hub signed: wrong
    (SIGNED + 10, False, False, True),     # policy ntp needs the kernel's word
    (SIGNED - 3600, False, False, False),
    (0, True, False, False),               # a Pi booting in 1970
])
def test_policies(now: float, synced: bool, ntp: bool, system: bool) -> None:
    clock = FakeClock(now, synchronized=synced)
    assert ClockJudge(clock, "ntp").trusted(SIGNED)[0] is ntp
    assert ClockJudge(clock, "system").trusted(SIGNED)[0] is system


def test_the_detail_says_why() -> None:
    clock = FakeClock(SIGNED - 90, synchronized=False)
    assert "NTP is not synchronised" in ClockJudge(clock, "ntp").trusted(SIGNED)[1]
    detail = ClockJudge(clock, "system").trusted(SIGNED)[1]
    assert "90 s before the newest signed time 2023-11-14T22:13:20Z" in detail
    clock.set(SIGNED + 5)
    ok, detail = ClockJudge(clock, "system").trusted(SIGNED)
    assert ok and "not before the newest signed time" in detail
    assert len(detail) < 200  # fits the event's detail field


def test_transitions_are_reported_once_each() -> None:
    clock = FakeClock(SIGNED - 100, synchronized=True)
    judge = ClockJudge(clock, "ntp")
    assert judge.state is None
    assert judge.check(SIGNED) == "clock.untrusted"  # the first check always reports
    assert judge.check(SIGNED) is None
    clock.advance(200)  # NTP stepped the clock forwards
    assert judge.check(SIGNED) == "clock.trusted"
    assert judge.state is True
    assert judge.check(SIGNED) is None
    clock.advance(-3600)  # someone set the clock back an hour
    assert judge.check(SIGNED) == "clock.untrusted"
    assert "before the newest signed time" in judge.detail
    clock.advance(3600)
    assert judge.check(SIGNED) == "clock.trusted"
    clock.set_synchronized(False)  # NTP lost
    assert judge.check(SIGNED) == "clock.untrusted"
    assert judge.check(SIGNED) is None


def test_a_newer_signed_time_can_make_a_trusted_clock_untrusted() -> None:
    clock = FakeClock(SIGNED, synchronized=True)
    judge = ClockJudge(clock, "system")
    assert judge.check(SIGNED) == "clock.trusted"
    assert judge.check(SIGNED + 60) == "clock.untrusted"  # a command signed "in our future"
    clock.advance(60)
    assert judge.check(SIGNED + 60) == "clock.trusted"


def test_the_first_check_reports_a_trusted_clock_too() -> None:
    assert ClockJudge(FakeClock(SIGNED), "ntp").check(0) == "clock.trusted"


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        ClockJudge(FakeClock(), "gps")  # type: ignore[arg-type]


@pytest.mark.parametrize(("ret", "status", "synced"), [
    (0, 0, True),                 # TIME_OK
    (1, 0, True),                 # TIME_INS: leap second pending, still synchronised
    (4, 0, True),                 # TIME_WAIT
    (0, STA_UNSYNC, False),
    (0, STA_UNSYNC | 0x2001, False),
    (0, 0x2001, True),            # other status bits (PLL, NANO) do not matter
    (TIME_ERROR, 0, False),
    (-1, 0, False),               # the call failed
])
def test_adjtimex_results_are_interpreted_as_the_kernel_documents(ret: int, status: int, synced: bool) -> None:
    assert synchronized_from(ret, status) is synced


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex(2) is Linux only")
def test_the_system_clock_reads_the_kernel_ntp_state() -> None:
    clock = SystemClock()
    result = clock.adjtimex()
    assert result is not None
    ret, status = result
    assert 0 <= ret <= TIME_ERROR
    assert clock.ntp_synchronized() is synchronized_from(ret, status)
    assert abs(clock.time() - time.time()) < 5


# --- OffsetClock: the chaos run's way to step one agent's clock -------------------------------


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_offset_clock_follows_its_file_both_ways(tmp_path: Path) -> None:
    f = tmp_path / "offset"
    c = OffsetClock(f, synchronized=True)
    assert abs(c.time() - time.time()) < 1  # no file: no offset
    _write(f, "-7200\n")
    assert abs(c.time() - (time.time() - 7200)) < 1
    _write(f, "259200.5")
    assert c.offset == 259200.5
    _write(f, "")
    assert c.offset == 0.0
    f.unlink()
    assert c.offset == 0.0


def test_offset_clock_keeps_the_last_good_offset_on_garbage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "offset"
    _write(f, "600")
    c = OffsetClock(f)
    assert c.offset == 600
    for bad in ("ten minutes", "nan", "inf", "\xff"):
        _write(f, bad)
        assert c.offset == 600
    assert "is not a number" in caplog.text or "offset file" in caplog.text


def test_offset_clock_steps_do_not_move_its_monotonic_clock(tmp_path: Path) -> None:
    f = tmp_path / "offset"
    c = OffsetClock(f)
    m0 = c.monotonic()
    _write(f, "86400")
    assert c.time() > time.time() + 86000
    assert c.monotonic() - m0 < 5


def test_offset_clock_takes_the_ntp_flag_from_the_system_unless_forced(tmp_path: Path) -> None:
    f = tmp_path / "offset"
    assert OffsetClock(f, synchronized=False).ntp_synchronized() is False
    assert OffsetClock(f, synchronized=True).ntp_synchronized() is True
    assert OffsetClock(f).ntp_synchronized() == SystemClock().ntp_synchronized()


def test_fake_clock_monotonic_moves_forward_only() -> None:
    c = FakeClock(1000.0)
    c.advance(30)
    c.advance(-500)
    c.set(400.0)  # backwards: a correction
    c.set(460.0)
    assert c.monotonic() == 90.0


def test_the_agent_cli_runs_on_an_offset_clock_only_when_the_test_hook_asks(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.__main__ import _test_clock

    monkeypatch.delenv("TORWART_CLOCK_OFFSET_FILE", raising=False)
    assert _test_clock() is None
    monkeypatch.setenv("TORWART_CLOCK_OFFSET_FILE", str(tmp_path / "offset"))
    monkeypatch.setenv("TORWART_CLOCK_NTP", "unsynced")
    clock = _test_clock()
    assert isinstance(clock, OffsetClock) and clock.ntp_synchronized() is False
