"""Authenticated time without a daemon to ask: the verdict's rules on chrony's reports,
the fallback when chronyd does not run, and every way chronyc can fail (a stand-in
chronyc program), each leaving the clock untrusted with a clear log, never a crash.
The same reader over real chronyd instances: tests/edge/test_chrony.py."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from edge import config
from edge.__main__ import main
from edge.chrony import Chronyc, ChronyVerdict, ChronyWatch, judge, parse_authdata, parse_sources, parse_tracking
from edge.clock import ClockJudge, FakeClock, OffsetClock, SystemClock, synchronized_from
from edge.errors import ConfigError
from wire.keys import new_key, write_key_file

SIGNED = 1_700_000_000


def site_doc(**policy: str) -> dict[str, Any]:
    return {"site": {"id": "minheim", "data_dir": "data"}, "policy": policy,
            "hub": {"host": "localhost", "signing_public_key": "A" * 43 + "=", "cred_key_file": "cred.key"},
            "doors": [{"id": "eingang", "lock_pin": 17}]}


def write_config(tmp_path: Path, doc: dict[str, Any]) -> Path:
    write_key_file(tmp_path / "cred.key", new_key(), overwrite=True)
    p = tmp_path / "site.toml"
    p.write_text(tomli_w.dumps(doc))
    return p


def tracking(leap: str = "Normal", refid: str = "7F000001", ref: str = "127.0.0.1", dispersion: float = 0.001) -> str:
    return f"{refid},{ref},2,1796302944.9,-0.000002,0,0,-0.389,-0.018,1.117,0.00007,{dispersion},64.0,{leap}"


@pytest.mark.parametrize(("track", "sources", "auth", "trusted", "says"), [
    (tracking(), "^,*,127.0.0.1,1,6,377,30,0,0,0", "127.0.0.1,NTS,1,15,256,3,0,0,8,100", True, "(NTS)"),
    (tracking(), "^,*,127.0.0.1,1,6,377,30,0,0,0", "127.0.0.1,SK,10,AES128,128,3,0,0,0,0", True, "(SK)"),
    (tracking(), "^,?,127.0.0.1,1,6,0,3000,0,0,0", "127.0.0.1,NTS,1,15,256,3,0,0,8,100", True, "(NTS)"),
    (tracking(leap="Not synchronised", refid="00000000", ref=""), "", "", False, "chrony is not synchronised"),
    (tracking(refid="7F7F0101", ref=""), "", "", False, "chrony is not synchronised"),
    (tracking(refid="7F7F0101", ref="127.127.1.1"), "", "", False, "serves its own local clock"),
    (tracking(refid="47505300", ref="GPS"), "#,*,GPS,0,4,377,3,0,0,0", "", False, "reference clock GPS"),
    (tracking(), "^,*,127.0.0.1,1,6,377,30,0,0,0", "127.0.0.1,-,0,0,0,4294967295,0,0,0,0", False,
     "selected source 127.0.0.1 is not authenticated (mode -)"),
    (tracking(), "^,*,127.0.0.2,1,6,377,30,0,0,0", "127.0.0.1,NTS,1,15,256,3,0,0,8,100", False,
     "selected source 127.0.0.2 is not authenticated (mode unknown)"),
    (tracking(), "", "127.0.0.2,NTS,1,15,256,3,0,0,8,100", False,
     "reference 127.0.0.1 is not authenticated (mode unknown)"),
    (tracking(dispersion=5.2), "", "127.0.0.1,NTS,1,15,256,3,0,0,8,100", False, "error bound exceeds 5 s"),
])
def test_the_rules_of_the_verdict(track: str, sources: str, auth: str, trusted: bool, says: str) -> None:
    v = judge(parse_tracking(track), parse_sources(sources), parse_authdata(auth))
    assert v.trusted is trusted and v.present
    assert says in v.detail


def test_without_chronyd_ntp_falls_back_to_the_kernel_and_nts_refuses(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="edge.chrony")
    reader = Chronyc(str(tmp_path / "run" / "chronyd.sock"))
    v = reader.read()
    assert not v.present and not v.trusted and "chronyd is not running" in v.detail
    clock = SystemClock(ChronyWatch(reader))
    state = clock.ntp_state()
    kernel = clock.adjtimex()
    assert kernel is not None
    assert state.synchronized is synchronized_from(*kernel)  # policy ntp: the kernel's flag, as before
    assert not state.authenticated and "kernel NTP flag, not authenticated" in state.detail
    ok, detail = ClockJudge(clock, "nts").trusted(SIGNED)
    assert not ok and ("time is not authenticated" in detail or "NTP is not synchronised" in detail)
    assert "chronyd is not running" in detail
    clock.ntp_state()
    said = [r.getMessage() for r in caplog.records if "NOT authenticated" in r.getMessage()]
    assert len(said) == 1 and "chronyd is not running" in said[0]  # said once, at the start
    missing = Chronyc(str(tmp_path / "run" / "chronyd.sock"), chronyc=str(tmp_path / "no-chronyc")).read()
    assert not missing.present and "chronyc is not installed" in missing.detail


def fake_chronyc(tmp_path: Path, name: str, body: str) -> str:
    """A stand-in chronyc program (args: -c -n -h SOCKET COMMAND; $5 is the command)."""
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return str(p)


TRACKING = "7F000001,127.0.0.1,2,1796302944.9,-0.000002,-0.0000003,0.0000006,-0.389,-0.018,1.117,0.00007,0.00001,0.5," \
           "Normal"


@pytest.mark.parametrize(("body", "says"), [
    ("echo 'hello world'", "chronyc tracking: unreadable output 'hello world'"),
    ("printf '\\377\\376\\n'", "chronyc tracking: unreadable output"),
    ("echo '506 Cannot talk to daemon' >&2; exit 1", "chronyc tracking failed: 506 Cannot talk to daemon"),
    ("echo '501 Not authorised'; exit 1", "501 Not authorised; the agent's user needs group _chrony"),
    ("kill -9 $$", "chronyc tracking failed: exit status -9"),
    (f'case "$5" in tracking) echo "{TRACKING}";; *) echo "^,*";; esac', "chronyc sources: unreadable output '^,*'"),
    (f'case "$5" in tracking) echo "{TRACKING}";; sources) echo "^,*,127.0.0.1,1,-1,377,0,0,0,0";; '
     f'*) echo ",NTS,1,15,256,3,0,0,8,100";; esac', "chronyc authdata: unreadable output"),
    (f'echo "{TRACKING}"; echo "{TRACKING}"', "chronyc tracking: expected one line, got 2"),
    (f'echo "{TRACKING.replace("7F000001", "7F0000ZZ")}"', "chronyc tracking: unreadable output"),
])
def test_garbage_or_errors_from_chronyc_mean_untrusted_with_a_clear_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, body: str, says: str) -> None:
    sock = tmp_path / "chronyd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(sock))
        watch = ChronyWatch(Chronyc(str(sock), chronyc=fake_chronyc(tmp_path, "chronyc", body), timeout=2.0))
        v = watch.verdict()
    assert v.present and not v.trusted
    assert says in v.detail
    assert any(says in r.getMessage() and "does not vouch" in r.getMessage() for r in caplog.records)


def test_a_path_that_is_no_socket_or_a_broken_reader_means_untrusted(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    v = Chronyc(str(tmp_path / "file"), chronyc=fake_chronyc(tmp_path, "chronyc", "exit 0")).read()
    assert (v.present, v.trusted) == (True, False) and "is not a socket" in v.detail

    class Broken(Chronyc):  # a bug in the reader costs trust, never the agent
        def read(self) -> ChronyVerdict:
            raise RuntimeError("boom")

    v = ChronyWatch(Broken()).verdict()
    assert (v.present, v.trusted) == (True, False) and "RuntimeError('boom')" in v.detail
    assert "reading chrony's verdict failed" in caplog.text


@pytest.mark.parametrize(("policy", "key", "says"), [
    ({"chrony_socket": "run/chronyd.sock"}, "policy.chrony_socket", "must be an absolute path"),
    ({"clock_trust": "gps"}, "policy.clock_trust", ""),
    ({"chrony_sock": "/run/chrony/chronyd.sock"}, "policy", "chrony_sock"),
])
def test_a_bad_clock_setting_is_refused_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            policy: dict[str, str], key: str, says: str) -> None:
    path = write_config(tmp_path, site_doc(**policy))
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err and says in err
    with pytest.raises(ConfigError):
        config.load(path)


def test_policy_nts_needs_authenticated_time_and_ntp_does_not(tmp_path: Path) -> None:
    clock = FakeClock(SIGNED + 10, synchronized=True)
    assert ClockJudge(clock, "ntp").trusted(SIGNED)[0] is True
    ok, detail = ClockJudge(clock, "nts").trusted(SIGNED)
    assert not ok and detail.startswith("time is not authenticated")
    clock.set_authenticated(True)
    assert ClockJudge(clock, "nts").trusted(SIGNED)[0] is True
    clock.set_synchronized(False)  # authenticated but no longer synchronised
    assert ClockJudge(clock, "nts").trusted(SIGNED)[1].startswith("NTP is not synchronised")
    forced = OffsetClock(tmp_path / "offset", synchronized=True)  # the chaos hook stands for any daemon
    assert ClockJudge(forced, "nts").trusted(0)[0] is True
