"""Signing-key rotation over the real parts (issue #13, PROTOCOL.md §3 ``keys``): the running
hub on a thread, a real Mosquitto, ten sites -- nine ``testkit.keysite`` sites (the edge's
own verify-and-apply over MQTT) and one real agent (s0), which is offline during the
rollover.

``keys rotate`` announces the new key to every site in a cache signed by the old one; the
hub does not switch while s0 is away; s0 catches up when it returns, the hub switches and
announces the new key alone; ``keys retire`` refuses while a site needs the old key and
then drops it. No site ever refuses a valid cache; a cache signed by the retired key, and
a forged ``keys`` list signed by a key no site trusts, are refused and change nothing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cache import CacheStore
from hub import config as config_mod
from hub.__main__ import main as hub_main
from hub.keyring import KeyRing, kid_of
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from testkit.keysite import ProtocolSite
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import envelope
from wire import messages as m
from wire.keys import public_key_b64
from wire.topics import Kind, topic

SITES = tuple(f"s{i}" for i in range(10))
OFFLINE = "s0"


def _ring(county: County) -> KeyRing:
    cfg = config_mod.load(county.hub_config_path)
    return KeyRing(cfg, open_store(cfg.hub.store_url))


def _agent_kids(county: County) -> list[str]:
    """The kids the real agent's cache database trusts (read as a tool would)."""
    cfg_key = public_key_b64(county.hub_key)
    with CacheStore(county.sites[OFFLINE].data_dir / "cache.db", read_only=True) as store:
        from edge.trust import Trust

        return Trust(cfg_key, store.trusted_keys(cfg_key)).kids()


def _status(capsys: pytest.CaptureFixture[str], cfg: str) -> str:
    assert hub_main(["keys", "status", "--config", cfg]) == 0
    return capsys.readouterr().out


@contextlib.contextmanager
def _light_sites(county: County, broker: Mosquitto) -> Iterator[dict[str, ProtocolSite]]:
    sites = {s: ProtocolSite(s, county.sites[s].data_dir, broker.host, broker.port,
                             public_key_b64(county.hub_key)) for s in SITES if s != OFFLINE}
    try:
        for s in sites.values():
            s.start()
        yield sites
    finally:
        for s in sites.values():
            s.stop()


def test_rotation_with_ten_sites_one_offline_then_retirement(
        tmp_path: Path, broker: Mosquitto, booking_platform: BookingPlatform,
        capsys: pytest.CaptureFixture[str]) -> None:
    county = make_county(tmp_path, broker, booking_platform, SITES)
    cfg = str(county.hub_config_path)
    hub_cfg = config_mod.load(cfg)
    old_kid = kid_of(county.hub_key)
    agent = county.sites[OFFLINE]
    assert hub_main(["cards", "add", "--config", cfg, "anna", "em4100:0A1B2C3D4E"]) == 0
    for s in SITES:
        assert hub_main(["grants", "add", "anna", s, "--config", cfg]) == 0
    assert "never rotated" in _status(capsys, cfg)

    with HubThread(county) as hub, _light_sites(county, broker) as light:
        store = open_store(hub_cfg.hub.store_url)

        def latest(site: str) -> int | None:
            st = store.cache_state(site)
            return None if st is None else st.version

        agent.start()
        wait_for(lambda: all(light[s].version == latest(s) is not None for s in light), 30, what="sites on latest")
        wait_for(lambda: agent.cache_version() == latest(OFFLINE) is not None, 30, what="agent on latest")
        assert agent.stop() == 0  # s0 goes offline for the whole rollover

        # --- rotate: [old, new], signed by old --------------------------------------------------------
        assert hub_main(["keys", "rotate", "--config", cfg]) == 0
        out = capsys.readouterr().out
        ring = _ring(county)
        new = ring.phase().next
        assert new is not None and new.kid in out
        assert all(f"site {s}: announced in cache version" in out for s in SITES)
        assert (ring.dir / f"{new.kid}.key").stat().st_mode & 0o077 == 0
        both = sorted([old_kid, new.kid])
        wait_for(lambda: all(s.kids() == both for s in light.values()), 30, what="nine sites trust both keys")
        # The hub does not switch while s0 has not acknowledged; retiring is refused.
        assert hub.service.call(hub.service.hub.keys_step) is None
        assert ring.phase().signing is not None and ring.phase().signing.kid == old_kid
        wait_for(lambda: f"waiting for 1 site(s): {OFFLINE}" in _status(capsys, cfg), 30,
                 what="keys status: every site but s0 acknowledged")
        assert hub_main(["keys", "retire", "--config", cfg]) == 1
        err = capsys.readouterr().err
        assert "still being announced" in err and OFFLINE in err
        assert hub_main(["keys", "rotate", "--config", cfg]) == 1
        assert "a rotation is in progress" in capsys.readouterr().err

        # --- s0 returns: it catches up, then the hub signs with the new key ------------------------------
        agent.start()
        wait_for(lambda: ring.phase().signing is not None and ring.phase().signing.kid == new.kid, 60,
                 what="the hub switched to the new key")
        wait_for(lambda: kid_of(config_mod.signing_key(hub_cfg)) == new.kid, 10,
                 what="the configured key file holds the new key")
        wait_for(lambda: all(s.kids() == [new.kid] for s in light.values()), 30, what="sites trust the new key alone")
        wait_for(lambda: _agent_kids(county) == [new.kid], 30, what="s0 trusts the new key alone")
        wait_for(lambda: "previous key" in (out := _status(capsys, cfg)) and "no longer needed" in out, 30,
                 what="keys status: the old key is no longer needed")

        # No site ever refused a valid cache (a duplicate delivery is answered stale_version).
        for s in light.values():
            assert {e for _, e in s.acks} <= {None, "stale_version"}, (s.site, s.acks)
        rejected = [e for e in store.events(site_id=OFFLINE, type="cache.rejected", limit=1000)]
        assert [e for e in rejected if "stale_version" not in e.payload] == []

        # --- retire -------------------------------------------------------------------------------------
        old_file = ring.key_file(old_kid)
        assert old_file.exists()
        assert hub_main(["keys", "retire", "--config", cfg]) == 0
        assert "retired" in capsys.readouterr().out
        assert not old_file.exists()
        assert hub_main(["keys", "retire", "--config", cfg]) == 1
        assert "no previous key" in capsys.readouterr().err

        # --- a cache signed by the retired key is refused, and so is a forged keys list -----------------
        watch = TestClient(broker.host, broker.port)
        try:
            for s in (OFFLINE, "s5"):
                watch.subscribe(topic(s, Kind.CACHE_ACK))
            forger = Ed25519PrivateKey.generate()
            attacks = [
                (county.hub_key, m.CacheFull(site="", version=2**50, issued_at=int(time.time()),
                                             expires_at=int(time.time()) + 3600, entries=[],
                                             keys=[public_key_b64(county.hub_key)])),
                (forger, m.CacheFull(site="", version=2**50, issued_at=int(time.time()),
                                     expires_at=int(time.time()) + 3600, entries=[],
                                     keys=[public_key_b64(forger)])),
            ]
            for s in (OFFLINE, "s5"):
                held = latest(s)
                for key, body in attacks:
                    ours = msgspec.structs.replace(body, site=s)
                    watch.publish(topic(s, Kind.CACHE_DELTA), envelope.sign(ours, key))
                    ack = m.decode(watch.expect(topic(s, Kind.CACHE_ACK), timeout=15).payload, m.CacheAck)
                    assert (ack.version, ack.ok, ack.error) == (None, False, "unknown_key")
                assert (light[s].version if s in light else agent.cache_version()) == held
            assert light["s5"].kids() == [new.kid]
            assert _agent_kids(county) == [new.kid]
        finally:
            watch.close()
        assert agent.stop() == 0
        store.close()
