"""Secret files readable by others are refused, on both sides, naming the file, the key and
the fix (chmod 600), with exit status 2 through the command lines: the hub's signing key,
enrollment key, sites' credential keys, CA key, broker password and TLS key, platform token
and webhook secret; the site's credential key, broker password and TLS key. The site's
password and TLS key were only checked for existence (found here, fixed in edge/config.py)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import tomli_w

from edge import config as edge_config
from edge.__main__ import main as edge_main
from edge.errors import ConfigError as EdgeConfigError
from hub import config as hub_config
from hub.__main__ import main as hub_main
from hub.errors import ConfigError as HubConfigError
from hub.provision import pki
from tests.edge.test_config import base_doc
from tests.edge.test_config import write as write_site_config
from tests.hub.test_hub_config import write_hub_config
from wire.keys import new_key, write_key_file

LOOSE = (0o644, 0o640, 0o604, 0o660)


def _secret(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path.name


def site_with_secrets(tmp_path: Path) -> Path:
    doc = base_doc()
    pair = pki.issue(pki.make_ca("test CA"), "minheim")
    pair.write(tmp_path / "minheim.crt", tmp_path / "minheim.key")
    (tmp_path / "ca.crt").write_bytes(pair.cert_pem())
    doc["hub"].update(username="minheim", password_file=_secret(tmp_path / "mqtt.password", "generated"),
                      tls=True, ca_file="ca.crt", cert_file="minheim.crt", key_file="minheim.key")
    return write_site_config(tmp_path, doc)


@pytest.mark.parametrize("mode", LOOSE, ids=oct)
@pytest.mark.parametrize(("file", "key"), [("cred.key", "hub.cred_key_file"),
                                           ("mqtt.password", "hub.password_file"),
                                           ("minheim.key", "hub.key_file")])
def test_a_site_secret_others_can_read_is_refused(tmp_path: Path, file: str, key: str, mode: int) -> None:
    path = site_with_secrets(tmp_path)
    edge_config.load(path)  # all 0600: fine
    os.chmod(tmp_path / file, mode)
    with pytest.raises(EdgeConfigError) as exc:
        edge_config.load(path)
    assert exc.value.key == key and "chmod 600" in str(exc.value) and str(path) in str(exc.value)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert edge_main(["check", "--config", str(path)]) == 2
    assert key in err.getvalue()


def hub_with_secrets(tmp_path: Path) -> Path:
    path = write_hub_config(tmp_path)
    write_key_file(tmp_path / "keys" / "enroll.key", new_key())
    ca = pki.make_ca("hub CA")
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    pki.issue(ca, "hub").write(tmp_path / "hub.crt", tmp_path / "hub.key")
    _secret(tmp_path / "hub-mqtt.password", "generated")
    _secret(tmp_path / "webhook.secret", "generated-secret")
    text = path.read_text()
    text = text.replace('signing_key_file = "keys/signing.key"',
                        'signing_key_file = "keys/signing.key"\nenroll_key_file = "keys/enroll.key"\n'
                        'ca_cert_file = "ca.crt"\nca_key_file = "ca.key"')
    text = text.replace('host = "127.0.0.1"', tomli_w.dumps({
        "host": "127.0.0.1", "username": "hub", "password_file": "hub-mqtt.password", "tls": True,
        "ca_file": "ca.crt", "cert_file": "hub.crt", "key_file": "hub.key"}))
    text = text.replace('token_file = "secrets/token"', 'token_file = "secrets/token"\n'
                        'webhook_secret_file = "webhook.secret"')
    path.write_text(text)
    return path


@pytest.mark.parametrize(("file", "key"), [
    ("keys/signing.key", "hub.signing_key_file"),
    ("keys/enroll.key", "hub.enroll_key_file"),
    ("keys/minheim.key", "sites[0].cred_key_file"),
    ("ca.key", "hub.ca_key_file"),
    ("hub-mqtt.password", "mqtt.password_file"),
    ("hub.key", "mqtt.key_file"),
    ("secrets/token", "booking.token_file"),
    ("webhook.secret", "booking.webhook_secret_file"),
])
def test_a_hub_secret_others_can_read_is_refused(tmp_path: Path, file: str, key: str) -> None:
    path = hub_with_secrets(tmp_path)
    hub_config.load(path)  # all 0600: fine
    os.chmod(tmp_path / file, 0o644)
    with pytest.raises(HubConfigError) as exc:
        hub_config.load(path)
    assert exc.value.key == key and "chmod 600" in str(exc.value)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # `run` checks every secret before it starts anything
        assert hub_main(["run", "--config", str(path)]) == 2
    assert key in err.getvalue()
