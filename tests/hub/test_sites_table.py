"""``torwart-hub sites`` shows each site's software version (its Status ``software``) and its
current event stream, as the site last reported them (issue #13)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub.__main__ import main
from hub.store import open_store
from tests.hub.test_hub_cli import cfg_path, run  # noqa: F401 (the fixture)
from wire import messages as m

Capsys = pytest.CaptureFixture[str]
STREAM = "0123456789abcdef0123456789abcdef"


def test_the_sites_table_shows_software_and_stream(cfg_path: Path, capsys: Capsys) -> None:  # noqa: F811
    c = str(cfg_path)
    code, out, _ = run(capsys, "sites", "--config", c)
    header = out.splitlines()[0].split()
    assert code == 0 and header[3:5] == ["SOFTWARE", "STREAM"]
    assert header[-4:] == ["CERT", "UNTIL", "TO", "PLATFORM"]  # join's certificate column, the backlog last
    with open_store(cfg_path.parent / "data" / "hub.sqlite3") as store:
        store.record_status("minheim", m.Status(state="online", ts=time.time(), boot="b1", software="1.4.2",
                                                cache_version=None, stream=STREAM), time.time())
    code, out, _ = run(capsys, "sites", "--config", c)
    row = next(line for line in out.splitlines() if line.startswith("minheim"))
    cells = row.split()
    assert code == 0 and cells[cells.index("1.4.2") + 1] == "01234567…"
    assert main(["sites", "--config", c]) == 0
