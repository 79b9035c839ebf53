"""The hub's join and renewal answers and the fleet commands, piece by piece, on a real
store, CA and config (no broker: the live tests are beside this file). Every refusal names
its reason and changes nothing but what it says (a wrong try's count)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from edge.renew import new_key_and_csr
from hub import config as config_mod
from hub.__main__ import main
from hub.core import open_hub
from hub.provision import fleet, pki
from hub.store import open_store
from testkit.util import free_port
from tests.fleet._fleet import CODE
from tests.hub.test_provision import hub_config
from wire import join as wj

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hub(tmp_path: Path, capsys: Capsys) -> tuple[Path, str]:
    """An initialised hub with site minheim added (join mode): (config path, its join code)."""
    path = hub_config(tmp_path, mqtt_port=free_port())
    assert run(capsys, "init", "--config", str(path))[0] == 0
    code, out, err = run(capsys, "site", "add", "minheim", "--broker-host", "mqtt.example", "--tls", "--config",
                         str(path))
    assert code == 0, err
    m = CODE.search(out)
    assert m is not None
    return path, m.group(1)


def _join(path: Path, code: str, csr: str | None = None, now: float | None = None) -> tuple[wj.JoinAnswer, bytes]:
    cfg = config_mod.load(path, check_files=False)
    code_id, secret = wj.parse_code(code)
    req, nonce = wj.make_request(code_id, secret, csr or new_key_and_csr()[1])
    with open_hub(cfg) as h:
        return h.answer_join(req, time.time() if now is None else now), nonce


def _refused(path: Path, code: str, status: int, words: str, **kw: object) -> None:
    with pytest.raises(fleet.JoinRefused) as exc:
        _join(path, code, **kw)  # type: ignore[arg-type]
    assert exc.value.status == status and words in str(exc.value), str(exc.value)


def test_site_add_in_join_mode_writes_only_the_hubs_key_and_the_code_opens_a_sealed_grant(
    hub: tuple[Path, str], tmp_path: Path
) -> None:
    path, code = hub
    cfg = config_mod.load(path, check_files=False)
    assert Path(cfg.site("minheim").cred_key_file).is_file()
    assert not (tmp_path / "data" / "provision").exists()
    answer, nonce = _join(path, code)
    code_id, secret = wj.parse_code(code)
    grant = wj.open_grant(answer, code_id, secret, nonce)
    assert grant.site == "minheim" and grant.broker == wj.Broker(host="mqtt.example", port=8883, tls=True)
    assert grant.password is None and "[[doors]]" in grant.site_toml
    # Tampering anywhere in the sealed answer, or another request's nonce, is detected.
    raw = bytearray(base64.b64decode(answer.sealed))
    raw[40] ^= 1
    for bad, n in ((wj.JoinAnswer(v=1, sealed=base64.b64encode(bytes(raw)).decode()), nonce), (answer, b"x" * 16)):
        with pytest.raises(wj.JoinError, match="failed its check"):
            wj.open_grant(bad, code_id, secret, n)


def test_wrong_tries_lock_a_code_and_a_newer_code_replaces_the_old(hub: tuple[Path, str], capsys: Capsys) -> None:
    path, code = hub
    code_id, secret = wj.parse_code(code)
    wrong = wj.format_code(code_id, ("0" if secret[0] != "0" else "1") + secret[1:])
    for left in (4, 3, 2, 1, 0):
        _refused(path, wrong, 403, f"wrong join code ({left} tries left)")
    _refused(path, code, 410, "locked after too many wrong tries")
    _refused(path, "ZZZZZZZZ" + code[8:], 403, "no such join code")
    rc, out, _ = run(capsys, "site", "join-code", "minheim", "--config", str(path))
    assert rc == 0 and "any earlier open code" in out
    newer = CODE.search(out).group(1)  # type: ignore[union-attr]
    rc, out, _ = run(capsys, "site", "join-code", "minheim", "--config", str(path))
    _refused(path, newer, 410, "replaced by a newer one")


def test_code_ids_have_40_bits_and_codes_of_an_upgraded_hub_with_20_bit_ids_still_parse() -> None:
    code_id, secret = wj.new_code()
    assert len(code_id) == wj.ID_CHARS == 8 and len(secret) == wj.SECRET_CHARS
    text = wj.format_code(code_id, secret)
    assert wj.parse_code(text) == (code_id, secret) == wj.parse_code(text.lower().replace("-", " "))
    legacy = "4F7Q-ABCDE-FGHJK-MNPQR-STVWX-YZ0123"  # as an older hub printed them
    assert wj.parse_code(legacy) == ("4F7Q", "ABCDEFGHJKMNPQRSTVWXYZ0123")
    for bad in (legacy[:-1], text + "0", "4F7QK-" + text, text.replace(text[-1], "U!")):
        with pytest.raises(wj.JoinError, match="not a join code"):
            wj.parse_code(bad)


def test_a_bad_request_uses_no_code_and_an_expired_code_is_refused(hub: tuple[Path, str]) -> None:
    path, code = hub
    _, csr = new_key_and_csr()
    bad = csr.replace(csr.splitlines()[3], csr.splitlines()[3][::-1])  # a broken CSR, MAC'd correctly
    _refused(path, code, 400, "bad certificate request", csr=bad)
    _refused(path, code, 410, "expired", now=time.time() + 25 * 3600)
    answer, _ = _join(path, code)  # the code still works: nothing above used it
    assert answer.v == 1
    _refused(path, code, 410, "used already")


def _renew_request(site: str, cert_pem: str, key: ec.EllipticCurvePrivateKey, *, ts: int | None = None,
                   sign_with: ec.EllipticCurvePrivateKey | None = None) -> tuple[wj.RenewRequest, str]:
    _, csr = new_key_and_csr()
    ts = int(time.time()) if ts is None else ts
    sig = (sign_with or key).sign(wj.renew_bytes(site, ts, cert_pem, csr), ec.ECDSA(hashes.SHA256()))
    return wj.RenewRequest(site=site, ts=ts, cert=cert_pem, csr=csr, sig=base64.b64encode(sig).decode()), csr


def test_renewal_needs_the_sites_current_unrevoked_certificate_and_its_key(hub: tuple[Path, str],
                                                                           capsys: Capsys) -> None:
    path, code = hub
    cfg = config_mod.load(path, check_files=False)
    key, csr = new_key_and_csr()
    code_id, secret = wj.parse_code(code)
    req, nonce = wj.make_request(code_id, secret, csr)
    with open_hub(cfg) as h:
        grant = wj.open_grant(h.answer_join(req, time.time()), code_id, secret, nonce)
        now = time.time()

        def refused(r: wj.RenewRequest, status: int, words: str) -> None:
            with pytest.raises(fleet.JoinRefused) as exc:
                h.answer_renew(r, now)
            assert exc.value.status == status and words in str(exc.value), str(exc.value)

        stranger = pki.issue(pki.make_ca("another CA"), "minheim")
        refused(_renew_request("minheim", stranger.cert_pem().decode(), stranger.key)[0], 403, "not issued by this CA")
        refused(_renew_request("altdorf", grant.cert, key)[0], 403, "not this site's")
        refused(_renew_request("minheim", grant.cert, key, ts=int(now) - 3600)[0], 403, "more than 300 s off")
        refused(_renew_request("minheim", grant.cert, key, sign_with=ec.generate_private_key(ec.SECP256R1()))[0],
                403, "signature does not hold")
        refused(msgspec.structs.replace(_renew_request("minheim", grant.cert, key)[0], csr="junk"), 400, "malformed")
        good = h.answer_renew(_renew_request("minheim", grant.cert, key)[0], now)
        assert x509.load_pem_x509_certificate(good.cert.encode()).not_valid_after_utc.timestamp() == good.not_after
    assert run(capsys, "site", "revoke", "minheim", "--config", str(path))[0] == 0
    with open_hub(config_mod.load(path, check_files=False)) as h, pytest.raises(fleet.JoinRefused, match="revoked"):
        h.answer_renew(_renew_request("minheim", good.cert, key)[0], time.time())
    with open_store(cfg.hub.store_url) as store:
        certs = store.site_certs("minheim")
    assert [c.how for c in certs] == ["join", "renew"] and all(c.revoked_at is not None for c in certs)
    crl = x509.load_pem_x509_crl(fleet.crl_path(cfg).read_bytes())
    assert {r.serial_number for r in crl} == {int(c.serial) for c in certs}


def test_the_fleet_commands_refuse_what_they_cannot_do(hub: tuple[Path, str], capsys: Capsys) -> None:
    path, _ = hub
    p = str(path)
    rc, _, err = run(capsys, "site", "revoke", "nowhere", "--config", p)
    assert rc == 1 and "no site 'nowhere'" in err
    rc, _, err = run(capsys, "site", "join-code", "minheim", "--code-hours", "0", "--config", p)
    assert rc == 1 and "at most 720 hours" in err
    rc, out, _ = run(capsys, "site", "revoke", "minheim", "--config", p)
    assert rc == 0 and "could not reach the broker" in out and "the broker must reload now" in out
    rc, _, err = run(capsys, "site", "join-code", "minheim", "--config", p)
    assert rc == 1 and "is revoked: `torwart-hub site reinstate minheim` first" in err
    rc, out, _ = run(capsys, "sites", "--config", p)
    assert rc == 0 and "REVOKED" in out
    rc, out, _ = run(capsys, "site", "reinstate", "minheim", "--config", p)
    assert rc == 0 and CODE.search(out) and "old certificates stay revoked" in out
    rc, _, err = run(capsys, "site", "add", "minheim", "--config", p)
    assert rc == 1 and "already configured" in err


def test_the_command_line_sends_a_revoked_site_nothing(hub: tuple[Path, str], capsys: Capsys) -> None:
    path, _ = hub
    p = str(path)
    assert run(capsys, "site", "revoke", "minheim", "--config", p)[0] == 0
    for argv in (("push", "minheim"), ("unlock", "minheim", "main"), ("lockdown", "minheim")):
        rc, _, err = run(capsys, *argv, "--timeout", "1", "--config", p)
        assert rc == 1 and "site 'minheim' is revoked: nothing is sent to it" in err, (argv, err)


def test_a_bundle_sites_certificate_is_recorded_so_that_revoking_puts_it_in_the_crl(
    hub: tuple[Path, str], tmp_path: Path, capsys: Capsys
) -> None:
    path, _ = hub
    p = str(path)
    rc, _, err = run(capsys, "site", "add", "altdorf", "--bundle", "--tls", "--broker-host", "mqtt.example",
                     "--config", p)
    assert rc == 0, err
    serial = x509.load_pem_x509_certificate(
        (tmp_path / "data" / "provision" / "altdorf" / "altdorf.crt").read_bytes()).serial_number
    cfg = config_mod.load(path, check_files=False)
    with open_store(cfg.hub.store_url) as store:
        assert [(c.serial, c.how) for c in store.site_certs("altdorf")] == [(str(serial), "bundle")]
    assert x509.load_pem_x509_crl(fleet.crl_path(cfg).read_bytes()).get_revoked_certificate_by_serial_number(
        serial) is None
    assert run(capsys, "site", "revoke", "altdorf", "--config", p)[0] == 0
    assert x509.load_pem_x509_crl(fleet.crl_path(cfg).read_bytes()).get_revoked_certificate_by_serial_number(
        serial) is not None


def test_a_failing_broker_reload_leaves_a_join_standing_and_makes_revoke_say_so(
    hub: tuple[Path, str], capsys: Capsys
) -> None:
    path, _ = hub
    p = str(path)
    path.write_text(path.read_text().replace('[hub]\n', '[hub]\nbroker_reload = ["false"]\n', 1))
    rc, out, err = run(capsys, "site", "add", "altdorf", "--no-tls", "--broker-host", "mqtt.example", "--config", p)
    assert rc == 0, err
    answer, _ = _join(path, CODE.search(out).group(1))  # type: ignore[union-attr]
    assert answer.v == 1
    cfg = config_mod.load(path, check_files=False)
    passwd = (cfg.hub.data_path / "mosquitto" / "passwd").read_text()
    assert "altdorf:" in passwd
    rc, out, err = run(capsys, "site", "revoke", "altdorf", "--config", p)
    assert rc == 1 and "FAILED: broker reload false failed (1)" in err and "certificate(s) revoked" in out
    assert "altdorf:" not in (cfg.hub.data_path / "mosquitto" / "passwd").read_text()


def test_sites_shows_the_certificates_end_warns_within_30_days_and_says_when_it_expired(
    hub: tuple[Path, str], capsys: Capsys
) -> None:
    from testkit.util import wait_for

    path, code = hub
    p = str(path)
    rc, out, _ = run(capsys, "sites", "--config", p)
    assert rc == 0 and "CERT UNTIL" in out and "certificate" not in out  # not joined yet: nothing to warn
    path.write_text(path.read_text().replace('[hub]\n', '[hub]\nsite_cert_seconds = 10\n', 1))
    _join(path, code)
    rc, out, _ = run(capsys, "sites", "--config", p)
    assert rc == 0 and "minheim: its certificate expires in" in out and "renews it itself" in out
    cfg = config_mod.load(path, check_files=False)
    with open_store(cfg.hub.store_url) as store:
        end = store.site_certs("minheim")[0].not_after
    wait_for(lambda: time.time() > end, 15, interval=0.2, what="the certificate's end")
    rc, out, _ = run(capsys, "sites", "--config", p)
    assert rc == 0 and "minheim: its certificate EXPIRED" in out and "site join-code minheim" in out


def test_a_second_join_revokes_what_the_site_held_and_only_the_newest_certificate_renews(
        hub: tuple[Path, str], capsys: Capsys) -> None:
    """An attacker with a copy of the old install (its key and certificate): after the site
    joins again, the copy's certificate is in the CRL and cannot renew; after a renewal, the
    certificate it replaced may renew only within the hour (a lost answer), never later."""
    path, code = hub
    cfg = config_mod.load(path, check_files=False)
    old_key, old_csr = new_key_and_csr()
    code_id, secret = wj.parse_code(code)
    req, nonce = wj.make_request(code_id, secret, old_csr)
    with open_hub(cfg) as h:
        old = wj.open_grant(h.answer_join(req, time.time()), code_id, secret, nonce)
    rc, out, err = run(capsys, "site", "join-code", "minheim", "--config", str(path))
    assert rc == 0, err
    m = CODE.search(out)
    assert m is not None
    new_key, new_csr = new_key_and_csr()
    code_id, secret = wj.parse_code(m.group(1))
    req, nonce = wj.make_request(code_id, secret, new_csr)
    now = time.time()

    def renew(h: Any, cert_pem: str, key: ec.EllipticCurvePrivateKey, at: float) -> tuple[str, Any]:
        """Renew as the site does at ``at``: the new certificate and its new key."""
        nkey, ncsr = new_key_and_csr()
        sig = key.sign(wj.renew_bytes("minheim", int(at), cert_pem, ncsr), ec.ECDSA(hashes.SHA256()))
        ans = h.answer_renew(wj.RenewRequest(site="minheim", ts=int(at), cert=cert_pem, csr=ncsr,
                                             sig=base64.b64encode(sig).decode()), at)
        return ans.cert, nkey

    with open_hub(cfg) as h:
        new = wj.open_grant(h.answer_join(req, now), code_id, secret, nonce)
        with pytest.raises(fleet.JoinRefused, match="revoked"):
            renew(h, old.cert, old_key, now)
        c1, k1 = renew(h, new.cert, new_key, now)
        c2, k2 = renew(h, new.cert, new_key, now + 60)  # the answer to the first was lost: once more
        with pytest.raises(fleet.JoinRefused, match="only the newest one renews"):
            renew(h, new.cert, new_key, now + 120)  # two newer ones now
        with pytest.raises(fleet.JoinRefused, match="only the newest one renews"):
            renew(h, c1, k1, now + 7200)  # c2 is newer, and older than an hour
        assert renew(h, c2, k2, now + 7200)[0]
    crl = x509.load_pem_x509_crl(fleet.crl_path(cfg).read_bytes())
    old_serial = x509.load_pem_x509_certificate(old.cert.encode()).serial_number
    assert old_serial in {r.serial_number for r in crl}
    new_serial = x509.load_pem_x509_certificate(new.cert.encode()).serial_number
    assert new_serial not in {r.serial_number for r in crl}
