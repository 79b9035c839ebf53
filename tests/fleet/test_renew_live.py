"""Certificate renewal on a real Mosquitto (issue #13) with certificates that last seconds:
the agent renews when a third of the lifetime is left (a request signed with its current
certificate, over the hub's HTTP listener), stays connected across the old certificate's
end, and connects with the new one when its session is thrown off after that end; the hub
records every certificate and ``torwart-hub sites`` shows the expiry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from hub.link import evict
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.county import HubThread
from testkit.util import wait_for
from tests.fleet._fleet import add_site, fleet_hub, join_site, online

LIFETIME = 24


def _not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


@pytest.mark.slow  # about 30 s: the first certificate's lifetime has to pass
def test_a_site_renews_its_short_certificate_and_stays_connected_past_the_old_ones_end(
    tmp_path: Path, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    fh = fleet_hub(tmp_path, booking_platform, ("minheim",), joining=("minheim",), tls=True, cert_seconds=LIFETIME)
    code = add_site(fh, capsys, "minheim", tls=True)
    site = fh.county.sites["minheim"]
    cert_file = site.dir / "minheim.crt"
    with HubThread(fh.county, fh.cfg):
        join_site(fh, capsys, "minheim", code, fh.county.http_url)
        first_end = _not_after(cert_file)
        assert first_end - time.time() <= LIFETIME + 1
        site.start()
        try:
            wait_for(lambda: online(fh, "minheim"), 20, what="minheim online")
            # Renewed before the end (a third of the lifetime left), then the old end passes.
            wait_for(lambda: _not_after(cert_file) > first_end, LIFETIME, what="a renewed certificate")
            wait_for(lambda: time.time() > first_end + 1, LIFETIME + 5, what="the first certificate's end")
            assert online(fh, "minheim")
            assert "disconnected from the broker" not in site.log_tail(400)
            assert "certificate renewed" in site.log_tail(400)
            # A new connection after the old end works with the renewed pair.
            connects = site.log_tail(400).count("edge.link: connected to")
            assert evict(fh.cfg.mqtt, "minheim")
            wait_for(lambda: site.log_tail(400).count("edge.link: connected to") > connects, 20,
                     what="minheim connected again")
            assert time.time() > first_end
        finally:
            site.stop()
    with open_store(fh.cfg.hub.store_url) as store:
        certs = store.site_certs("minheim")
    assert certs[0].how == "join" and {c.how for c in certs[1:]} == {"renew"} and len(certs) >= 2
    assert max(c.not_after for c in certs) == pytest.approx(_not_after(cert_file), abs=1)
    code_, out, _ = fh.hub(capsys, "sites")
    assert code_ == 0 and "CERT UNTIL" in out and "minheim: its certificate expires in" in out  # warned
