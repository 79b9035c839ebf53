"""The demo (scripts/demo --fast) runs a whole day through real parts, reports what the
hub recorded, and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 150


def processes_naming(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (as ps would show them)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and int(proc.name) != os.getpid():
            found.append(f"{proc.name}: {cmd.strip()}")
    return found


def run_demo(workdir: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([sys.executable, "-m", "testkit.demo", "--workdir", str(workdir), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo stops its children on SIGTERM
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo took longer than {timeout} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to look for left-over processes")
def test_the_fast_demo_plays_a_day_and_reports_it(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    summary_path = tmp_path / "summary.json"
    t0 = time.monotonic()
    res = run_demo(workdir, "--fast", "--summary-json", str(summary_path))
    elapsed = time.monotonic() - t0
    out = res.stdout
    assert res.returncode == 0, out[-4000:]
    summary = json.loads(summary_path.read_text())

    assert summary["grants"] > 0
    assert summary["denials"] >= 1
    assert summary["denial_reasons"].get("unknown_credential", 0) >= 1  # the stranger
    assert summary["checkins"] > 0
    assert summary["checkouts"] > 0
    assert summary["held_open_alarms"] >= 1
    assert summary["cancelled_card_refused"] is True
    assert summary["problems"] == []
    assert summary["processes_left"] == []
    assert set(summary["per_site"]) == {"minheim", "wehlen"}
    # What a reader of the narration sees.
    assert "Bürgerhaus Minheim/eingang: granted (booking)" in out
    assert "REFUSED (unknown_credential)" in out
    assert "ALARM door.held_open" in out
    assert "Dashboard: http://127.0.0.1:" in out
    # No process the demo started is left: nothing names its work directory any more.
    assert processes_naming(str(workdir)) == []
    keys = ("grants", "denials", "checkins", "checkouts", "held_open_alarms", "cancelled_card_refused")
    print(f"demo --fast: {elapsed:.1f} s; " + json.dumps({k: summary[k] for k in keys}))
