"""Booking adapters through the registry: a made-up adapter (``tests/hub/_sheet_adapter.py``)
registered with one line is checked by the config, built by the sync and worded by the
CLI, against the real HTTP fake, with no other file knowing about it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub import config
from hub.booking import HttpPolicy, registry
from hub.store import open_store
from hub.sync import BookingSync, build_adapter
from testkit.booking_fake import BookingPlatform
from testkit.util import free_port
from tests.hub._sheet_adapter import SheetAdapter
from tests.hub.test_hub_cli import Capsys, run
from tests.hub.test_hub_config import SITE, refused, write_hub_config
from tests.hub.test_provision import hub_config

FAST = HttpPolicy(connect_timeout=2, read_timeout=5, retries=1, backoff_factor=0.001, backoff_max=0.01)
H = 3600


@pytest.fixture
def sheet_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one line a new adapter adds to the registry."""
    monkeypatch.setitem(registry.ADAPTERS, "sheet", "tests.hub._sheet_adapter")


def sheet_config(root: Path, url: str, sites: str = SITE) -> Path:
    return write_hub_config(root, sites, booking=f'[booking]\nadapter = "sheet"\nbase_url = "{url}"\n')


def test_an_unknown_adapter_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    path = sheet_config(tmp_path, "https://sheet.example/bookings.csv")
    err = refused(path)
    assert err.key == "booking.adapter" and "unknown booking adapter 'sheet' (one of ics, rest)" in str(err)
    assert registry.names() == ["ics", "rest"]


def test_a_registered_adapter_is_checked_by_the_config(tmp_path: Path, sheet_registered: None) -> None:
    assert registry.names() == ["ics", "rest", "sheet"]
    err = refused(write_hub_config(tmp_path, booking='[booking]\nadapter = "sheet"\n'))
    assert err.key == "booking.base_url" and 'adapter = "sheet" needs the URL of the booking sheet' in str(err)
    err = refused(write_hub_config(tmp_path, booking='[booking]\nadapter = "soap"\n'))
    assert err.key == "booking.adapter" and "(one of ics, rest, sheet)" in str(err)

    # Its synthetic resource for a room configured without resources, as ICS has one.
    sites = SITE.replace('resources = ["res-cowork"]\n', "")
    cfg = config.load(sheet_config(tmp_path, "https://sheet.example/bookings.csv", sites))
    assert cfg.booking.adapter == "sheet"
    assert [r.resources for r in cfg.sites[0].rooms] == [["sheet:minheim/cowork"], ["res-meeting", "res-meeting-half"]]


def test_a_registered_adapter_is_built_and_synced(
    tmp_path: Path, sheet_registered: None, booking_platform: BookingPlatform
) -> None:
    t = int(time.time())
    url = booking_platform.put_ics("sheet", f"s1,res-cowork,m1,{t + H},{t + 2 * H}\n"
                                            f"s2,res-meeting-half,m2,{t + H},{t + 3 * H}\n")
    cfg = config.load(sheet_config(tmp_path, url))
    adapter = build_adapter(cfg, lambda _email: None, policy=FAST)
    assert isinstance(adapter, SheetAdapter) and adapter.source == "sheet"
    adapter.close()

    with open_store(tmp_path / "hub.sqlite3") as store:
        store.sync_sites(cfg.sites)
        with BookingSync(cfg, store, policy=FAST) as sync:
            assert isinstance(sync.adapter, SheetAdapter)
            lines: list[str] = []
            report = sync.run_once(time.time(), progress=lines.append)
            assert report.ok and report.source == "sheet" and report.seen == 2 and report.pages == 1
            assert sorted(report.changed) == ["s1", "s2"] and report.sites == {"minheim"}
            assert lines[0] == "reading the booking sheet (sheet)"
            assert lines[1].startswith("sheet 1: HTTP 200")
            assert store.get_sync_state("sheet").failures == 0

            booking_platform.put_ics("sheet", f"s1,res-cowork,m1,{t + H},{t + 2 * H}\n")
            report = sync.run_once(time.time())  # complete: the vanished line is cancelled
            assert report.ok and report.changed == ("s2",)
            assert store.get_booking("s2").status == "cancelled"  # type: ignore[union-attr]

            booking_platform.put_ics("sheet", "not a booking\n")
            report = sync.run_once(time.time())  # a failing platform changes nothing
            assert not report.ok and "not a booking line" in (report.error or "")
            assert store.get_booking("s1").status == "confirmed"  # type: ignore[union-attr]
            assert store.get_sync_state("sheet").failures == 1


def test_the_cli_words_a_registered_adapter(
    tmp_path: Path, sheet_registered: None, booking_platform: BookingPlatform, capsys: Capsys
) -> None:
    path = hub_config(tmp_path, base_url=booking_platform.base_url, mqtt_port=free_port())
    c = str(path)
    assert run(capsys, "init", "--config", c)[0] == 0
    assert run(capsys, "site", "add", "minheim", "--bundle", "--config", c, "--broker-host", "mqtt.example")[0] == 0
    t = int(time.time())
    url = booking_platform.put_ics("sheet", f"s1,res-cowork,m1,{t + H},{t + 2 * H}\n")
    text = path.read_text()
    rest = f'adapter = "rest"\nbase_url = "{booking_platform.base_url}"\n'
    assert rest in text
    path.write_text(text.replace(rest, f'adapter = "sheet"\nbase_url = "{url}"\n'))
    assert run(capsys, "cards", "add", "m1", "em4100:7E00A1B2C3", "--config", c)[0] == 0

    code, out, _ = run(capsys, "sync", "--config", c)
    assert code == 0
    assert "reading the booking sheet (sheet)" in out and "sheet 1: HTTP 200" in out
    assert "sheet: 1 bookings from 1 sheets, 1 changed" in out and "site minheim: new cache version" in out
    code, out, _ = run(capsys, "sites", "--config", c)
    assert "booking sync (sheet): " in out
