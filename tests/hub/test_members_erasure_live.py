"""GDPR access and erasure over the real parts (issue #13): ``torwart-hub members export``
and ``members remove`` against a real Mosquitto and a real site agent (minheim), with a
second site (altdorf) offline. After the removal no row of the hub store, no row of the
site's cache and no retained cache message holds the member's credentials, name or
e-mail (nor, in the caches, their pseudonym), searched with the chaos run's scanner
(testkit.credscan); the online site acknowledged the new version, the offline one is
reported as not having done so."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from hub import config as config_mod
from hub.__main__ import main as hub_main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county
from testkit.credscan import CredentialScanner
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire.topics import Kind, topic

# Long, lettered values so that the scanner cannot match them by chance (testkit.credscan).
CARD = "em4100:0A1B2C3D4E"
PIN = "pin:482915736021"
OTHER_CARD = "em4100:0F9E8D7C6B"
NAME, EMAIL = "Annegret Erasmus-Vogel", "annegret.vogel@example.org"


def _retained_caches(broker: Mosquitto, sites: tuple[str, ...], scanner: CredentialScanner) -> int:
    """Scan the retained cache message of each site, as a site connecting now gets it."""
    with TestClient(broker.host, broker.port) as c:
        got = {}
        for s in sites:
            c.subscribe(topic(s, Kind.CACHE))
            msg = c.expect(topic(s, Kind.CACHE), timeout=10)
            assert msg.retain
            got[msg.topic] = msg.payload
    return sum(scanner.scan_mqtt(t, p) for t, p in got.items())


def test_export_then_erase_leaves_no_trace_in_store_caches_or_retained_messages(
    tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    # store="sqlite": the credential scan reads the store's file (whatever TORWART_TEST_STORE says).
    county = make_county(tmp_path, broker, booking_platform, ("minheim", "altdorf"), store="sqlite")
    cfg = str(county.hub_config_path)
    hub_cfg = config_mod.load(cfg)
    site = county.sites["minheim"]
    watch = TestClient(broker.host, broker.port)
    watch.subscribe(topic("minheim", Kind.STATUS))
    site.start()
    try:
        wait_for(lambda: any(b'"online"' in x.payload for x in watch.drain()), 20, what="site online")
        assert hub_main(["cards", "add", "--config", cfg, "anna", CARD, "--name", NAME, "--email", EMAIL]) == 0
        assert hub_main(["cards", "add", "--config", cfg, "anna", PIN]) == 0
        assert hub_main(["cards", "add", "--config", cfg, "bert", OTHER_CARD, "--name", "Bert"]) == 0
        for s in ("minheim", "altdorf"):
            for member in ("anna", "bert"):
                assert hub_main(["grants", "add", member, s, "--config", cfg]) == 0
        assert hub_main(["push", "minheim", "--config", cfg, "--timeout", "20"]) == 0
        assert hub_main(["push", "altdorf", "--config", cfg, "--timeout", "1"]) == 1  # offline
        capsys.readouterr()
        with open_store(hub_cfg.hub.store_url) as store:
            anna = store.get_member("anna")
            assert anna is not None
            who = anna.who

        # --- access: everything about anna, no raw credential -------------------------------
        out = tmp_path / "anna.json"
        assert hub_main(["members", "export", "anna", "--out", str(out), "--config", cfg]) == 0
        assert "written to" in capsys.readouterr().out
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        doc = json.loads(out.read_text())
        assert doc["member"] == {"id": "anna", "name": NAME, "email": EMAIL, "pseudonym": who,
                                 "created": doc["member"]["created"]}
        assert [c["type"] for c in doc["credentials"]] == ["em4100"]
        assert len(doc["credentials"][0]["fingerprint"]) == 8
        assert doc["pin"] == "set"
        assert sorted(g["site"] for g in doc["grants"]) == ["altdorf", "minheim"]
        assert doc["site_caches"] == [{"site": "minheim", "entries": 2}, {"site": "altdorf", "entries": 2}]
        assert CredentialScanner([CARD, PIN]).scan("export", out.read_bytes(), "export") == 0
        assert hub_main(["members", "export", "anna", "--config", cfg]) == 0  # stdout
        assert json.loads(capsys.readouterr().out) == doc
        missing = tmp_path / "nobody.json"
        assert hub_main(["members", "export", "nobody", "--out", str(missing), "--config", cfg]) == 1
        assert "no member 'nobody'" in capsys.readouterr().err
        assert not missing.exists()

        # The search finds anna before the erasure (so that finding nothing after means something).
        def scanner() -> CredentialScanner:
            return CredentialScanner([CARD, PIN], words=[NAME, EMAIL])

        def cache_scanner() -> CredentialScanner:
            return CredentialScanner([CARD, PIN], words=[NAME, EMAIL, who])

        before = scanner()
        assert before.scan_sqlite(hub_cfg.hub.store_path) > 0
        assert {f.what for f in before.findings} == {"string", "value", "word"}
        assert cache_scanner().scan_sqlite(site.data_dir / "cache.db") > 0
        hub_before = cache_scanner()
        hub_before.scan_sqlite(hub_cfg.hub.store_path, skip=_not_caches(hub_cfg.hub.store_path))
        assert {f.where.rsplit(":", 1)[1] for f in hub_before.findings} == {"cache_entries", "cache_versions"}
        assert _retained_caches(broker, ("minheim", "altdorf"), cache_scanner()) == 2

        # --- erasure ---------------------------------------------------------------------------
        assert hub_main(["members", "remove", "nobody", "--config", cfg]) == 1
        assert "no member 'nobody'" in capsys.readouterr().err
        code = hub_main(["members", "remove", "anna", "--config", cfg, "--timeout", "10"])
        text = capsys.readouterr().out
        assert code == 1, text  # altdorf has not acknowledged
        assert "site minheim: acknowledged cache version" in text
        assert "site altdorf: NOT acknowledged within 10 s" in text
        assert "retention (90 days)" in text

        after = scanner()
        assert after.scan_sqlite(hub_cfg.hub.store_path) == 0, after.findings
        # The caches, at the hub (latest entries and change log) and at the site, no longer
        # name anna at all, not even by pseudonym.
        hub_caches = cache_scanner()
        hub_caches.scan_sqlite(hub_cfg.hub.store_path, skip=_not_caches(hub_cfg.hub.store_path))
        assert hub_caches.findings == []
        assert hub_caches.scanned["database row"] > 0  # bert's entries
        at_site = cache_scanner()
        assert at_site.scan_sqlite(site.data_dir / "cache.db") == 0, at_site.findings
        assert _retained_caches(broker, ("minheim", "altdorf"), cache_scanner()) == 0
        # Bert is untouched.
        with open_store(hub_cfg.hub.store_url) as store:
            assert store.get_member("anna") is None
            assert store.owner_of_credential(OTHER_CARD) == "bert"
        assert hub_main(["members", "export", "anna", "--config", cfg]) == 1
    finally:
        site.stop()
        watch.close()


def _not_caches(path: Path) -> list[tuple[str, str | None]]:
    """The hub store's tables other than its caches' (``cache_*``), for the scanner to skip."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        conn.close()
    return [(t, None) for t in tables if not t.startswith("cache_")]
