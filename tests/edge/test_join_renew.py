"""The site's side of joining and renewal, piece by piece: what ``torwart-edge join``
refuses before it spends the code (a bad URL, a code that is not one, a config it cannot
read, a hub it cannot reach), ``[hub] url`` in the config, and a renewal cut between its
two renames finished at the next start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import config as config_mod
from edge import renew
from edge.__main__ import main
from edge.errors import ConfigError
from hub.provision import pki
from testkit.broker import TlsFiles
from testkit.site import write_site
from testkit.util import free_port

CODE = "4F7QK2MZ-ABCDE-FGHJK-MNPQR-STVWX-YZ0123"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_join_refuses_before_spending_the_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.toml"
    rc, err = run(capsys, "join", "--hub", "ftp://hub", "--code", CODE, "--config", str(cfg))
    assert rc == 1 and "http:// or https://" in err
    rc, err = run(capsys, "join", "--hub", "http://hub", "--code", "4F7Q-ABCDE", "--config", str(cfg))
    assert rc == 1 and "not a join code" in err
    cfg.write_text("[site\nbroken")
    rc, err = run(capsys, "join", "--hub", "http://127.0.0.1:1", "--code", CODE, "--config", str(cfg))
    assert rc == 1 and "cannot be read as TOML" in err
    cfg.unlink()
    rc, err = run(capsys, "join", "--hub", f"http://127.0.0.1:{free_port()}", "--code", CODE.lower(), "--config",
                  str(cfg))
    assert rc == 1 and "cannot reach the hub" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_the_hub_url_must_be_http_or_https(tmp_path: Path) -> None:
    site = write_site(tmp_path, "minheim", _Endpoint(), Ed25519PrivateKey.generate())
    text = site.config_path.read_text()
    site.config_path.write_text(text.replace("[hub]\n", '[hub]\nurl = "https://hub.example"\n'))
    assert config_mod.load(site.config_path).hub.url == "https://hub.example"
    site.config_path.write_text(text.replace("[hub]\n", '[hub]\nurl = "hub.example"\n'))
    with pytest.raises(ConfigError) as exc:
        config_mod.load(site.config_path)
    assert exc.value.key is not None and "url" in exc.value.key


class _Endpoint:
    host = "127.0.0.1"
    port = 1883


def test_a_renewal_cut_between_its_renames_is_finished_at_the_next_start(tmp_path: Path) -> None:
    tls = TlsFiles.make(tmp_path / "pki")
    old_cert, old_key = tls.client("minheim")
    site = write_site(tmp_path / "site", "minheim", _Endpoint(), Ed25519PrivateKey.generate(),
                      tls_files=(tls.ca_file, old_cert, old_key))
    cfg = config_mod.load(site.config_path)
    new = pki.issue(tls.ca, "minheim")
    # The new certificate is in place, the new key still beside it (the cut).
    old_cert.write_bytes(new.cert_pem())
    renew.write_private(old_key.with_name(old_key.name + ".new"), new.key_pem())
    renew.finish_pending(cfg)
    assert old_key.read_bytes() == new.key_pem() and not old_key.with_name(old_key.name + ".new").exists()
    assert os.stat(old_key).st_mode & 0o777 == 0o600
    # A stale new key that matches no certificate is dropped; the pair in place stays.
    stale = pki.issue(tls.ca, "minheim")
    renew.write_private(old_key.with_name(old_key.name + ".new"), stale.key_pem())
    renew.finish_pending(cfg)
    assert old_key.read_bytes() == new.key_pem() and not old_key.with_name(old_key.name + ".new").exists()
    # Due once a third of the lifetime is left, not before.
    span = renew.lifetime(cfg)
    assert span is not None
    start, end = span
    assert not renew.due(cfg, start + (end - start) * 0.66) and renew.due(cfg, start + (end - start) * 0.67)
