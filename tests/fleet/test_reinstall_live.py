"""A stolen Pi replaced (issue #13), over the real parts: revoked, reinstated with a new
code, the re-imaged Pi (no keys, no data: a new outbox stream) joins again and runs; the hub
kept the old stream's events and ``torwart-hub sites`` shows the reset to the new stream.
Then the site is decommissioned: its retained cache leaves the broker, its events stay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.county import HubThread
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from tests.fleet._fleet import CODE, add_site, fleet_hub, join_site, online
from wire.topics import Kind, topic


def test_a_reimaged_pi_joins_again_after_revoke_and_reinstate_and_a_removed_sites_cache_goes(
    tmp_path: Path, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    fh = fleet_hub(tmp_path, booking_platform, ("minheim",), joining=("minheim",))
    site = fh.county.sites["minheim"]
    code = add_site(fh, capsys, "minheim", tls=False)
    with HubThread(fh.county, fh.cfg) as ht:
        join_site(fh, capsys, "minheim", code, fh.county.http_url)
        site.start()
        try:
            wait_for(lambda: online(fh, "minheim") and site.cache_version() is not None, 30, what="minheim running")
        finally:
            site.stop()
        with open_store(fh.cfg.hub.store_url) as store:
            wait_for(lambda: len(store.event_streams("minheim")) == 1 and store.events(site_id="minheim"), 10,
                     what="the first stream's events at the hub")
            first = store.event_streams("minheim")[0].stream
            old_events = len(store.events(site_id="minheim", limit=1000))

        assert fh.hub(capsys, "site", "revoke", "minheim")[0] == 0
        rc, out, err = fh.hub(capsys, "site", "reinstate", "minheim", "--broker-host", fh.broker.host,
                              "--broker-port", str(fh.broker.port), "--no-tls")
        assert rc == 0, err
        new_code = CODE.search(out).group(1)  # type: ignore[union-attr]
        # The re-imaged Pi: its hardware config kept, no data; its old key files still on
        # the disk it was restored from (a join replaces them; test_join_live joins afresh).
        shutil.rmtree(site.data_dir)
        for name in ("mqtt.password", "ca.crt"):
            (site.dir / name).unlink(missing_ok=True)
        join_site(fh, capsys, "minheim", new_code, fh.county.http_url)
        site.start()
        try:
            wait_for(lambda: online(fh, "minheim") and site.cache_version() is not None, 30,
                     what="the re-imaged site running")
            with open_store(fh.cfg.hub.store_url) as store:
                wait_for(lambda: len(store.event_streams("minheim")) == 2, 20, what="the new stream at the hub")
                streams = {s.stream for s in store.event_streams("minheim")}
                assert first in streams
                assert len([e for e in store.events(site_id="minheim", limit=1000) if e.stream == first]) \
                    == old_events
            rc, out, _ = fh.hub(capsys, "sites")
            assert rc == 0 and "minheim: site was reset" in out
        finally:
            site.stop()

        with open_store(fh.cfg.hub.store_url) as store:
            assert store.cache_state("minheim") is not None and store.cache_log("minheim", 0)
        rc, out, _ = fh.hub(capsys, "site", "remove", "minheim")
        assert rc == 0 and "retained cache at the broker was cleared" in out and "REMOVED" in fh.hub(
            capsys, "sites")[1]
        assert "its caches were dropped from the store" in out
        # The running hub builds nothing for the removed site, whatever asks it to.
        svc = ht.service
        svc.call(lambda: svc.hub.changed({"minheim"}))
        svc.call(svc.hub.rebuild_all)
        svc.call(svc.hub.watch_versions)
        svc.call(svc.hub.converge_all)
        assert list(svc.call(lambda: list(svc.hub.rebuild({"minheim"})))) == []  # the command line's rebuild
        r = requests.post(fh.county.http_url + "/api/v1/sites/minheim/push", timeout=10,
                          headers={"Authorization": f"Bearer {fh.county.admin_token}"})
        assert r.status_code == 409 and "removed" in r.json()["error"]
        with open_store(fh.cfg.hub.store_url) as store:
            assert store.cache_state("minheim") is None and store.cache_snapshot("minheim") is None
            assert store.cache_log("minheim", 0) == []
    with TestClient(fh.broker.host, fh.broker.hub_port, username="hub", password=fh.passwords["hub"]) as c:
        c.subscribe(topic("minheim", Kind.CACHE))
        with pytest.raises(TimeoutError):
            c.expect(topic("minheim", Kind.CACHE), timeout=2)
    with open_store(fh.cfg.hub.store_url) as store:
        assert len(store.events(site_id="minheim", limit=1000)) >= old_events
        assert len([e for e in store.events(site_id="minheim", limit=1000) if e.stream == first]) == old_events
        assert store.site_lifecycle()["minheim"][0] == "removed"
        assert store.cache_state("minheim") is None and store.cache_log("minheim", 0) == []
