"""``torwart-hub backup`` / ``restore`` over the real parts (issue #13): a backup made while
the hub runs holds the store and every key and secret file (0600); restore refuses while
the hub runs, refuses to replace differing files without --force, refuses a damaged or
foreign file and changes nothing then; and a restored older store never hands a site a
cache version it already passed: the site (a real agent) holds a version above the
restored store's latest, reports it, and gets a version above it."""

from __future__ import annotations

import hashlib
import json
import stat
import tarfile
import time
from pathlib import Path

import pytest

from hub import config as config_mod
from hub.__main__ import main as hub_main
from hub.core import open_hub
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import HubThread, make_county
from testkit.util import wait_for

SITE = "minheim"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _latest(cfg: config_mod.HubConfig) -> int | None:
    with open_store(cfg.hub.store_url) as store:
        st = store.cache_state(SITE)
        return None if st is None else st.version


def test_backup_while_running_then_restore_never_hands_a_site_a_version_it_passed(
        tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A SQLite store (whatever TORWART_TEST_STORE says): a hub on PostgreSQL is backed up
    # with pg_dump (tests/hub/test_backup_files.py).
    county = make_county(tmp_path, broker, booking_platform, (SITE,), store="sqlite")
    cfg_path = str(county.hub_config_path)
    cfg = config_mod.load(cfg_path)
    assert hub_main(["cards", "add", "--config", cfg_path, "anna", "em4100:0A1B2C3D4E"]) == 0
    assert hub_main(["grants", "add", "anna", SITE, "--config", cfg_path]) == 0
    agent = county.sites[SITE]
    backup = tmp_path / "backups" / "hub.tar.gz"
    backup.parent.mkdir()
    try:
        with HubThread(county):
            agent.start()
            wait_for(lambda: agent.cache_version() is not None and agent.cache_version() == _latest(cfg), 30,
                     what="the site holds the latest version")
            v1 = _latest(cfg)
            assert v1 is not None
            capsys.readouterr()
            assert hub_main(["backup", str(backup), "--config", cfg_path]) == 0
            out = capsys.readouterr().out
            assert "store: 100%" in out and "owner-readable only" in out
            assert stat.S_IMODE(backup.stat().st_mode) == 0o600
            with tarfile.open(backup) as tar:
                manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            targets = {Path(f["target"]).name for f in manifest["files"]}
            assert {"hub.toml", "signing.key", "enroll.key", f"{SITE}.cred.key", "admin.token"} <= targets
            assert manifest["store"]["target"] == str(cfg.hub.store_path.resolve())

            # While the hub runs, a restore is refused.
            assert hub_main(["restore", str(backup), "--config", cfg_path, "--force"]) == 1
            assert "a hub is running" in capsys.readouterr().err  # the run lock's message (hub.runlock)

            # The hub moves on: versions issued faster than one a second run ahead of the clock.
            with open_hub(cfg) as hub:
                ahead = hub.caches.rebuild(SITE, int(time.time()), min_version=int(time.time()) + 3600)
            assert ahead is not None and ahead > v1
            wait_for(lambda: agent.cache_version() == ahead, 30, what="the site holds the version ahead")
        store_sha = _sha(cfg.hub.store_path)

        # Without --force, files that differ are not replaced; a foreign, damaged or misdirected
        # file is refused; nothing changes.
        assert hub_main(["restore", str(backup), "--config", cfg_path]) == 1
        assert "pass --force" in capsys.readouterr().err
        damaged = tmp_path / "damaged.tar.gz"
        raw = bytearray(backup.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        damaged.write_bytes(bytes(raw))
        junk = tmp_path / "junk.tar.gz"
        junk.write_bytes(b"not a backup")
        for bad in (damaged, junk, tmp_path / "missing.tar.gz"):
            assert hub_main(["restore", str(bad), "--config", cfg_path, "--force"]) == 1
            err = capsys.readouterr().err
            assert "error:" in err, err
        assert hub_main(["restore", str(backup), "--config", str(tmp_path / "other.toml"), "--force"]) == 1
        assert "this backup is of the hub configured in" in capsys.readouterr().err
        assert _sha(cfg.hub.store_path) == store_sha
        assert _latest(cfg) == ahead

        # Restore the older state.
        assert hub_main(["restore", str(backup), "--config", cfg_path, "--force"]) == 0
        assert "restored the hub as of" in capsys.readouterr().out
        assert _latest(cfg) == v1
        assert stat.S_IMODE(Path(cfg.hub.signing_key_file).stat().st_mode) == 0o600
        with open_store(cfg.hub.store_url) as store:  # the node running at the backup is not running now
            lease = store.lease()
            assert store.nodes() and {n.role for n in store.nodes()} == {"stopped"}
            assert lease is not None and lease.holder is None and lease.previous is not None

        # The restored hub meets the site that passed it: the site gets a version above its own.
        with HubThread(county):
            wait_for(lambda: (agent.cache_version() or 0) > ahead, 60,
                     what="the site got a version above the one it held")
            assert (_latest(cfg) or 0) > ahead
    finally:
        agent.stop()
