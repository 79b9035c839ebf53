"""Authenticated time: chrony's verdict read by the agent, over real chronyd instances.

An NTS server and an attacker (plain NTP, one hour wrong) run on loopback; clients are
chronyd instances configured as the shipped firmware_configs/chrony/torwart.conf does
(NTS sources, ``authselectmode require``). None of them touches the machine's clock
(``chronyd -x``; testkit/chrony.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.__main__ import main
from edge.chrony import Chronyc, ChronyVerdict, ChronyWatch
from edge.clock import ClockJudge, SystemClock
from testkit.broker import Mosquitto
from testkit.chrony import (
    SHIPPED_CONF,
    Chronyd,
    NtpServer,
    chrony_binaries,
    client,
    group_id,
    nts_server,
    plain_server,
    shipped_policy,
)
from testkit.site import write_site
from testkit.util import wait_for
from wire import messages as m

from .hubside import HubSide, agent_in_thread
from .test_chrony_verdict import site_doc, write_config

ROOT = Path(__file__).resolve().parents[2]
SIGNED = 1_700_000_000  # a newest signed time long past: only the NTP verdict decides here
HOUR = 3600.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NtpServer, NtpServer]]:
    """(the NTS server, the attacker's plain NTP server serving a time one hour ahead)."""
    if chrony_binaries() is None:
        pytest.skip("chrony is not installed (scripts/setup --dev installs Debian's chrony)")
    d = tmp_path_factory.mktemp("chrony-servers")
    started: list[NtpServer] = []
    try:
        started.append(nts_server(d / "nts", "127.0.0.1"))
        started.append(plain_server(d / "attacker", "127.0.0.2", offset=HOUR))
    except RuntimeError as exc:
        for s in started:
            s.daemon.stop()
        pytest.skip(f"chronyd cannot run here: {exc}")
    yield started[0], started[1]
    for s in started:
        s.daemon.stop()


def test_the_shipped_chrony_config_parses_and_requires_authenticated_sources() -> None:
    bins = chrony_binaries()
    if bins is None:
        pytest.skip("chrony is not installed (scripts/setup --dev installs Debian's chrony)")
    done = subprocess.run([bins[0], "-p", "-f", str(SHIPPED_CONF)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr  # chronyd -p parses every directive and prints them
    servers = [line.split() for line in done.stdout.splitlines() if line.startswith("server ")]
    assert len(servers) >= 3 and all("nts" in s[2:] for s in servers)
    assert {"authselectmode require", "nocerttimecheck 1", "makestep 1 3"} <= set(shipped_policy())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not Path("/lib/systemd/system/chrony.service").exists(),
                    reason="needs systemd-analyze and Debian's chrony.service")
def test_the_chrony_drop_in_is_a_valid_unit_setting(tmp_path: Path) -> None:
    shutil.copy("/lib/systemd/system/chrony.service", tmp_path)
    (tmp_path / "chrony.service.d").mkdir()
    shutil.copy(SHIPPED_CONF.parent / "chrony.service.d" / "torwart.conf", tmp_path / "chrony.service.d")
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "chrony.service")], capture_output=True,
                          text=True, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}, check=False)
    assert "torwart.conf" not in done.stdout + done.stderr  # an unknown key or bad value is named with the file
    (tmp_path / "chrony.service.d" / "torwart.conf").write_text("[Service]\nUMasq=0007\n")
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "chrony.service")], capture_output=True,
                          text=True, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}, check=False)
    assert "Unknown key 'UMasq'" in done.stdout + done.stderr  # the check above can see a bad drop-in


def trusted_verdict(reader: Chronyc, timeout: float = 15.0) -> ChronyVerdict:
    last: list[ChronyVerdict] = []

    def ok() -> ChronyVerdict | None:
        last[:] = [reader.read()]
        return last[0] if last[0].trusted else None

    try:
        return wait_for(ok, timeout, interval=0.1, what="chrony's trusted verdict")
    except TimeoutError:
        raise AssertionError(f"never trusted; last verdict: {last}") from None


def source(c: Chronyd, address: str) -> tuple[str, int]:
    """(state, reach) of ``address`` in the client's ``sources``."""
    for line in c.chronyc("sources").splitlines():
        f = line.split(",")
        if f[2] == address:
            return f[1], int(f[5], 8)
    raise AssertionError(f"{address} is not a source of {c.dir}")


def test_a_client_synchronised_over_nts_is_trusted(servers: tuple[NtpServer, NtpServer], tmp_path: Path) -> None:
    nts, _ = servers
    with client(tmp_path / "client", [nts.server_line()], trusted_ca=nts.ca_file) as c:
        v = trusted_verdict(Chronyc(c.socket))
        assert (v.present, v.source, v.auth) == (True, "127.0.0.1", "NTS")
        clock = SystemClock(ChronyWatch(Chronyc(c.socket)))
        for policy in ("ntp", "nts"):
            ok, detail = ClockJudge(clock, policy).trusted(SIGNED)
            assert ok, detail
            assert "chrony synchronised to 127.0.0.1 (NTS)" in detail


def test_a_forged_ntp_server_beside_nts_is_never_selected(servers: tuple[NtpServer, NtpServer],
                                                          tmp_path: Path) -> None:
    nts, attacker = servers
    with client(tmp_path / "client", [nts.server_line(), attacker.server_line()], trusted_ca=nts.ca_file) as c:
        trusted_verdict(Chronyc(c.socket))
        seen: set[str] = set()

        def eight_answers_from_the_attacker() -> bool:
            state, reach = source(c, attacker.address)
            seen.add(state)
            return reach == 0o377

        wait_for(eight_answers_from_the_attacker, 20, interval=0.1, what="eight polls of the attacker")
        assert "*" not in seen and "+" not in seen  # heard, never selected nor combined
        v = Chronyc(c.socket).read()
        assert v.trusted and v.source == "127.0.0.1"
        offset = float(c.chronyc("tracking").split(",")[4])
        assert abs(offset) < 1.0  # the forged hour did not reach the clock chrony keeps


def test_with_only_a_forged_server_the_clock_is_never_trusted(servers: tuple[NtpServer, NtpServer],
                                                              tmp_path: Path) -> None:
    _, attacker = servers
    with client(tmp_path / "client", [attacker.server_line()]) as c:
        wait_for(lambda: source(c, attacker.address)[1] == 0o377, 20, interval=0.1, what="eight polls")
        v = Chronyc(c.socket).read()
        assert v.present and not v.trusted
        assert v.detail == "chrony is not synchronised"
        judge = ClockJudge(SystemClock(ChronyWatch(Chronyc(c.socket))), "ntp")
        ok, detail = judge.trusted(SIGNED)
        assert not ok and "NTP is not synchronised (chrony is not synchronised;" in detail


def test_a_chrony_that_follows_an_unauthenticated_server_is_not_believed(servers: tuple[NtpServer, NtpServer],
                                                                         tmp_path: Path) -> None:
    # A chrony left on its distribution's policy (no ``authselectmode require``) believes
    # the forged server: it says synchronised, and the kernel flag would too. The agent
    # asks which source it follows and whether that source is authenticated.
    _, attacker = servers
    with client(tmp_path / "client", [attacker.server_line()], shipped=False) as c:
        wait_for(lambda: source(c, attacker.address)[0] == "*", 20, interval=0.1, what="chrony to follow it")
        tracking = c.chronyc("tracking").split(",")
        assert tracking[13].strip() == "Normal" and float(tracking[4]) > HOUR - 60  # fooled by an hour
        v = Chronyc(c.socket).read()
        assert (v.present, v.trusted, v.source, v.auth) == (True, False, "127.0.0.2", "-")
        assert "selected source 127.0.0.2 is not authenticated" in v.detail
        for policy in ("ntp", "nts"):
            assert ClockJudge(SystemClock(ChronyWatch(Chronyc(c.socket))), policy).trusted(SIGNED)[0] is False


def test_with_the_internet_gone_the_clock_stays_trusted_as_chrony_last_set_it(tmp_path: Path) -> None:
    # Offline operation: the NTS server goes away; chrony selects nothing any more but keeps
    # its authenticated reference, and nobody can set the clock meanwhile.
    nts = nts_server(tmp_path / "nts")
    try:
        with client(tmp_path / "client", [nts.server_line()], trusted_ca=nts.ca_file) as c:
            reader = Chronyc(c.socket)
            trusted_verdict(reader)
            # until chrony knows its clock's frequency well (skew under 50 ppm), as after minutes on a Pi
            wait_for(lambda: float(c.chronyc("tracking").split(",")[9]) < 50, 20, interval=0.1, what="a small skew")
            nts.daemon.stop()
            wait_for(lambda: source(c, nts.address)[0] != "*", 20, interval=0.1, what="the source unselected")
            v = reader.read()
            assert v.trusted and v.detail == "chrony synchronised to 127.0.0.1 (NTS)", v
    finally:
        nts.daemon.stop()


def test_a_hung_chronyd_costs_trust_after_the_timeout_and_never_holds_up_a_decision(
        servers: tuple[NtpServer, NtpServer], tmp_path: Path) -> None:
    nts, _ = servers
    with client(tmp_path / "client", [nts.server_line()], trusted_ca=nts.ca_file) as c:
        trusted_verdict(Chronyc(c.socket))
        watch = ChronyWatch(Chronyc(c.socket, timeout=1.0), refresh_seconds=0.0, stale_seconds=0.5)
        assert watch.verdict().trusted
        assert c.proc is not None
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            slowest = 0.0

            def answered_untrusted(text: str) -> bool:
                nonlocal slowest
                t0 = time.monotonic()
                v = watch.verdict()
                slowest = max(slowest, time.monotonic() - t0)
                return not v.trusted and text in v.detail

            wait_for(lambda: answered_untrusted("could not be refreshed"), 10, what="a stale verdict")
            wait_for(lambda: answered_untrusted("chronyc tracking did not answer within 1 s"), 10,
                     what="the timed-out chronyc")
            assert slowest < 0.5  # a badge never waits for chronyc
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
        wait_for(lambda: watch.verdict().trusted, 10, what="trust back once chronyd answers")


@pytest.mark.skipif(os.geteuid() != 0 or group_id("_chrony") is None,
                    reason="needs root and Debian's _chrony user (apt-get install chrony)")
def test_the_agents_user_reads_the_verdict_through_group_chrony_and_is_told_how_when_it_cannot(
        servers: tuple[NtpServer, NtpServer]) -> None:
    # The layout of the shipped drop-in (firmware_configs/chrony/chrony.service.d/torwart.conf):
    # chronyd as _chrony, its socket directory 0770 and UMask 0007, the agent's user in
    # group _chrony. ``nobody`` stands for the agent's user.
    nts, _ = servers
    gid = group_id("_chrony")
    assert gid is not None
    python = Path("/usr/bin/python3")  # the venv's interpreter may sit where nobody can reach it
    too_old = "import sys; sys.exit(sys.version_info < (3, 11))"
    if not os.access(python, os.X_OK) or subprocess.run([python, "-c", too_old], check=False).returncode:
        pytest.skip("needs the system's python3 >= 3.11 (Debian 12 has 3.11)")
    base = Path(tempfile.mkdtemp(prefix="torwart-chrony-"))
    base.chmod(0o755)
    code = ("import sys; from edge.chrony import Chronyc; v = Chronyc(sys.argv[1], timeout=3).read(); "
            "print(v.trusted, v.detail)")
    try:
        with client(base / "client", [nts.server_line()], trusted_ca=nts.ca_file, user="_chrony", umask=0o007) as c:
            trusted_verdict(Chronyc(c.socket))

            def as_nobody(groups: list[int]) -> str:
                return subprocess.run([python, "-c", code, c.socket], user=65534, group=65534,
                                      extra_groups=groups, cwd=base, capture_output=True, text=True, timeout=20,
                                      env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
                                      check=True).stdout.strip()

            assert as_nobody([gid]) == "True chrony synchronised to 127.0.0.1 (NTS)"
            told = as_nobody([])
            assert told.startswith("False ") and "is not accessible" in told and "group _chrony" in told
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- config, ``torwart-edge check`` and the agent -------------------------------------------------


def test_check_says_which_source_of_truth_judges_the_clock(servers: tuple[NtpServer, NtpServer], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    nts, _ = servers
    with client(tmp_path / "client", [nts.server_line()], trusted_ca=nts.ca_file) as c:
        trusted_verdict(Chronyc(c.socket))
        assert main(["check", "--config", str(write_config(tmp_path, site_doc(clock_trust="nts",
                                                                               chrony_socket=c.socket)))]) == 0
        assert "clock clock_trust=nts: chrony synchronised to 127.0.0.1 (NTS) -> trusted now" in capsys.readouterr().out
    missing = str(tmp_path / "gone" / "chronyd.sock")
    for policy, says in (("ntp", f"chronyd is not running (no command socket {missing}); kernel NTP flag, "
                                 "not authenticated: "),
                         ("nts", "-> NOT trusted now"),
                         ("system", "clock_trust=system: the system clock, trusted unless behind the newest signed")):
        assert main(["check", "--config", str(write_config(tmp_path, site_doc(clock_trust=policy,
                                                                               chrony_socket=missing)))]) == 0
        assert says in capsys.readouterr().out


def test_the_agent_trusts_its_clock_by_chronys_nts_verdict_and_stops_when_chronyd_goes(
        servers: tuple[NtpServer, NtpServer], tmp_path: Path, broker: Mosquitto, mock_pins: Any) -> None:
    nts, _ = servers
    hub_key = Ed25519PrivateKey.generate()
    c = client(tmp_path / "client", [nts.server_line()], trusted_ca=nts.ca_file)
    try:
        trusted_verdict(Chronyc(c.socket))
        site = write_site(tmp_path / "minheim", "minheim", broker, hub_key,
                          policy={"clock_trust": "nts", "chrony_socket": c.socket})
        hub = HubSide(broker, hub_key, site.site)
        try:
            with agent_in_thread(site) as agent:  # the agent's own clock: site_clock(policy)
                hub.wait_online()
                ev = hub.wait_event(lambda e: e.type.startswith("clock."))
                assert isinstance(ev, m.ClockTrusted) and "chrony synchronised to 127.0.0.1 (NTS)" in ev.detail
                c.stop()  # chronyd gone: under "nts" no fallback to the kernel's flag

                def untrusted() -> m.Event | None:
                    agent.post(agent._check_clock)
                    try:
                        return hub.wait_event(lambda e: e.type == "clock.untrusted", timeout=0.2)
                    except TimeoutError:
                        return None

                ev = wait_for(untrusted, 20, interval=0.0, what="clock.untrusted")
                assert isinstance(ev, m.ClockUntrusted) and "chronyd is not running" in ev.detail
        finally:
            hub.close()
    finally:
        c.stop()
