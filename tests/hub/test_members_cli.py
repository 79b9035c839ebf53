"""``torwart-hub members`` without a site to answer: bad input and trouble are reported and
change nothing they should not (an export that cannot be written writes nothing; a member
no cache holds is erased without touching the broker; an erasure while the broker is
unreachable stands and says the caches were not published)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import tomli_w

from hub import config as config_mod
from hub.__main__ import main as hub_main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county
from testkit.util import free_port


def _county(tmp_path: Path, broker: Mosquitto, platform: BookingPlatform) -> str:
    county = make_county(tmp_path, broker, platform, ("minheim",))
    return str(county.hub_config_path)


def test_an_export_that_cannot_be_written_writes_nothing(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _county(tmp_path, broker, booking_platform)
    assert hub_main(["cards", "add", "anna", "em4100:0A1B2C3D4E", "--name", "Anna", "--config", cfg]) == 0
    capsys.readouterr()
    out = tmp_path / "no-such-dir" / "anna.json"
    assert hub_main(["members", "export", "anna", "--out", str(out), "--config", cfg]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert not out.parent.exists()
    # An existing file is replaced whole, owner-readable only, whatever its mode was.
    old = tmp_path / "anna.json"
    old.write_text("old")
    old.chmod(0o644)
    assert hub_main(["members", "export", "anna", "--out", str(old), "--config", cfg]) == 0
    assert json.loads(old.read_text())["member"]["name"] == "Anna"
    assert old.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".anna")) == []


def test_a_member_no_cache_holds_is_erased_without_the_broker(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _county(tmp_path, broker, booking_platform)
    broker.stop()
    assert hub_main(["cards", "add", "anna", "em4100:0A1B2C3D4E", "--name", "Anna", "--config", cfg]) == 0
    assert hub_main(["members", "remove", "anna", "--config", cfg, "--timeout", "2"]) == 0
    out = capsys.readouterr().out
    assert "member anna erased: name, e-mail, 1 credentials" in out
    assert "no site's cache held the member" in out
    assert hub_main(["members", "remove", "anna", "--config", cfg]) == 1
    assert "no member 'anna'" in capsys.readouterr().err


def test_an_erasure_with_the_broker_unreachable_stands_and_says_so(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _county(tmp_path, broker, booking_platform)
    doc = tomllib.loads(Path(cfg).read_text())
    doc["mqtt"]["port"] = free_port()  # nobody listens there
    Path(cfg).write_text(tomli_w.dumps(doc))
    assert hub_main(["cards", "add", "anna", "em4100:0A1B2C3D4E", "--name", "Anna", "--config", cfg]) == 0
    assert hub_main(["grants", "add", "anna", "minheim", "--config", cfg]) == 0
    capsys.readouterr()
    assert hub_main(["members", "remove", "anna", "--config", cfg, "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "member anna erased" in out
    assert "site minheim: NOT acknowledged cache version" in out and "not published (cannot reach the broker" in out
    with open_store(config_mod.load(cfg).hub.store_url) as store:
        assert store.get_member("anna") is None
        snap = store.cache_snapshot("minheim")
        assert snap is not None and snap[1] == {}  # the new version, recorded for the running hub


def test_an_erasure_cleans_a_revoked_sites_cache_without_sending_it_and_builds_none_for_a_removed_site(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    county = make_county(tmp_path, broker, booking_platform, ("minheim", "wittlich"))
    cfg = str(county.hub_config_path)
    assert hub_main(["cards", "add", "anna", "em4100:0A1B2C3D4E", "--name", "Anna", "--config", cfg]) == 0
    for site in ("minheim", "wittlich"):
        assert hub_main(["grants", "add", "anna", site, "--config", cfg]) == 0
    url = config_mod.load(cfg).hub.store_url
    with open_store(url) as store:
        assert all(store.cache_snapshot(s) is not None for s in ("minheim", "wittlich"))
        store.set_site_state("minheim", "revoked", at=1.0)
        store.set_site_state("wittlich", "removed", at=1.0)
        assert store.drop_site_caches("wittlich") is not None
    capsys.readouterr()
    assert hub_main(["members", "remove", "anna", "--config", cfg, "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "member anna erased" in out and "site minheim: NOT acknowledged" in out
    assert "site is revoked: nothing is sent to it" in out and "wittlich" not in out
    with open_store(url) as store:
        snap = store.cache_snapshot("minheim")
        assert snap is not None and snap[1] == {}  # rebuilt without anna, recorded, not sent
        assert store.cache_snapshot("wittlich") is None and store.cache_log("wittlich", 0) == []
