"""Joining without moving keys, over the real parts (issue #13): ``torwart-hub site add``
prints a one-time code; ``torwart-edge join`` on the "Pi" makes the site's key pair there
and gets everything else from the hub's real HTTP listener, through a proxy that records
every byte. The site then runs and opens its door from the cache the hub signed. The
recording holds no private key, no credential key, no broker password and not the code;
replaying it, using the code again, a wrong code and an expired code are refused and change
nothing."""

from __future__ import annotations

import base64
import socket
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edge.__main__ import main as edge_main
from hub.store import open_store
from testkit.booking_fake import BookingPlatform
from testkit.county import HubThread
from testkit.tcpproxy import TcpProxy
from testkit.util import wait_for
from tests.fleet._fleet import fleet_hub
from wire import join as wj
from wire.keys import read_key_file

CARD = "em4100:0A1B2C3D4E"


def _edge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = edge_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _replay(proxy: TcpProxy, request: bytes) -> bytes:
    """Send recorded request bytes again, as they were, and read the answer (the request said
    "Connection: close": the hub closes after answering)."""
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def _forms(secret: bytes) -> list[bytes]:
    """The ways a secret could travel in the clear."""
    return [secret, base64.b64encode(secret), secret.hex().encode(), secret.hex().upper().encode()]


def test_a_site_joins_through_a_recording_proxy_and_opens_its_door_from_the_cache(
    tmp_path: Path, booking_platform: BookingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    fh = fleet_hub(tmp_path, booking_platform, ("minheim", "altdorf"), joining=("minheim",))
    code, out, err = fh.hub(capsys, "site", "add", "minheim", "--broker-host", fh.broker.host, "--broker-port",
                            str(fh.broker.port), "--no-tls")
    assert code == 0, err
    join_code = fh.code_of(out)
    assert "torwart-edge join --hub URL" in out and "declared in" in out
    assert not (fh.cfg.hub.data_path / "provision").exists()  # no bundle, no site secret written here
    code_id, secret = wj.parse_code(join_code)
    with open_store(fh.cfg.hub.store_url) as store:
        row = store.join_code(code_id)
    assert row is not None and row.secret_hash == wj.code_hash(secret) and secret not in str(row)

    site = fh.county.sites["minheim"]
    before = site.config_path.read_text()
    with HubThread(fh.county, fh.cfg), TcpProxy("127.0.0.1", fh.county.http_port, record=True) as proxy:
        url = f"http://{proxy.host}:{proxy.port}"
        # A wrong code (one letter off) and a code that is not one change nothing.
        wrong = join_code[:-1] + ("A" if join_code[-1] != "A" else "B")
        code, _, err = _edge(capsys, "join", "--hub", url, "--code", wrong, "--config", str(site.config_path))
        assert code == 1 and "wrong join code (4 tries left)" in err
        code, _, err = _edge(capsys, "join", "--hub", url, "--code", "1234", "--config", str(site.config_path))
        assert code == 1 and "not a join code" in err
        assert site.config_path.read_text() == before and not (site.dir / "minheim.key").exists()
        proxy.recording.clear()  # type: ignore[union-attr]

        code, out, err = _edge(capsys, "join", "--hub", url, "--code", join_code, "--config", str(site.config_path))
        assert code == 0, err
        assert "joined the hub as site minheim" in out and "before-join" in out
        recorded = list(proxy.recording or [])
        request = b"".join(data for up, data in recorded if up)
        stream = b"".join(data for _, data in recorded)
        assert b"POST /fleet/v1/join" in request and b"200 OK" in stream

        # The private key was made here and stays owner-only; the files are the hub's.
        key_file, cred_file, pw_file = site.dir / "minheim.key", site.dir / "cred.key", site.dir / "mqtt.password"
        for f in (key_file, cred_file, pw_file):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        cred_key = read_key_file(cred_file)
        assert cred_key == read_key_file(fh.cfg.site("minheim").cred_key_file)
        private = serialization.load_pem_private_key(key_file.read_bytes(), None)
        der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        scalar = private.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
        password = pw_file.read_text().strip().encode()
        secrets_in_flight = [*_forms(der), *_forms(scalar), *_forms(cred_key), password, key_file.read_bytes(),
                             join_code.encode(), secret.encode(), wj.code_hash(secret).encode()]
        for s in secrets_in_flight:
            assert s not in stream, s[:12]

        # Replaying the recorded request, or joining again with the used code: refused.
        answer = _replay(proxy, request)
        assert b" 410 " in answer.split(b"\r\n", 1)[0] and b"used already" in answer
        joined = site.config_path.read_text()
        code, _, err = _edge(capsys, "join", "--hub", url, "--code", join_code, "--config", str(site.config_path))
        assert code == 1 and "used already" in err and site.config_path.read_text() == joined

        # An expired code is refused; the site's files stay as they are.
        code, out, _ = fh.hub(capsys, "site", "join-code", "altdorf", "--code-hours", "0.0002")
        expiring = fh.code_of(out)
        wait_for(lambda: _expired(fh, expiring), 5, what="the code to expire")
        other = fh.county.sites["altdorf"]
        code, _, err = _edge(capsys, "join", "--hub", url, "--code", expiring, "--config", str(other.config_path))
        assert code == 1 and "expired" in err and not (other.dir / "altdorf.key").exists()

        # The joined site runs and opens its door from the cache the hub signed.
        assert fh.hub(capsys, "cards", "add", "anna", CARD, "--name", "Anna")[0] == 0
        assert fh.hub(capsys, "grants", "add", "anna", "minheim")[0] == 0
        site.start()
        try:
            wait_for(lambda: site.cache_version() is not None and _granted(fh) == 0, 30, what="a cache at the site")

            def opened() -> bool:
                """A badge (again, until the cache with anna's grant has arrived): granted?"""
                site.badge("eingang-sim", CARD)
                try:
                    return wait_for(lambda: _granted(fh), 10, interval=0.1, what="access.granted") > 0
                except TimeoutError:
                    return False

            wait_for(opened, 60, interval=0.5, what="the door opened by the badge")
        finally:
            site.stop()


def _expired(fh: object, code: str) -> bool:
    from tests.fleet._fleet import FleetHub

    assert isinstance(fh, FleetHub)
    with open_store(fh.cfg.hub.store_url) as store:
        row = store.join_code(wj.parse_code(code)[0])
    return row is not None and row.expires_at < time.time()


def _granted(fh: object) -> int:
    from tests.fleet._fleet import FleetHub

    assert isinstance(fh, FleetHub)
    with open_store(fh.cfg.hub.store_url) as store:
        return len(store.events(site_id="minheim", type="access.granted"))


def test_the_join_endpoint_answers_malformed_requests_and_limits_each_address(
    tmp_path: Path, booking_platform: BookingPlatform
) -> None:
    import requests

    from hub.fleetweb import JOIN_PATH, PER_MINUTE, RENEW_PATH

    fh = fleet_hub(tmp_path, booking_platform, ("minheim",), joining=())
    with HubThread(fh.county, fh.cfg):
        url = fh.county.http_url
        first = requests.post(url + RENEW_PATH, data=b'{"site": 1}', timeout=10)
        assert first.status_code == 400 and "malformed renewal request" in first.json()["error"]
        answers = [requests.post(url + JOIN_PATH, data=b"not json", timeout=10) for _ in range(PER_MINUTE)]
    assert [a.status_code for a in answers[:-1]] == [400] * (PER_MINUTE - 1)
    assert answers[-1].status_code == 429 and answers[-1].headers["Retry-After"] == "60"
