"""The shipped broker drop-in, firmware_configs/mosquitto/torwart.conf, run on a real
Mosquitto for tests/test_mosquitto_template.py: only its file paths (into a temporary
directory) and its two listeners (free loopback ports) are rewritten, and what Debian's
main mosquitto.conf adds in production (persistence_location, the log) is put in front."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.provision import hub_password_lines
from hub.provision.mosquitto import acl_text, password_line
from hub.provision.pki import make_crl
from testkit.broker import Mosquitto, TlsFiles
from testkit.mqttclient import TestClient
from testkit.util import free_port, port_open, wait_for

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "firmware_configs" / "mosquitto" / "torwart.conf"
#: The hub's data_dir in production: its systemd StateDirectory.
DATA_DIR = "/var/lib/torwart-hub"
PATH_KEYS = ("password_file", "acl_file", "cafile", "certfile", "keyfile", "crlfile")


def rewrite(text: str, paths: dict[str, Path], tls_port: int, plain_port: int) -> str:
    """The shipped file with its paths and listeners replaced; everything else verbatim.
    ``paths`` maps each file's name in production (below DATA_DIR) to the test's file; the
    file must name only those, and both listeners exactly once."""
    listeners = {"8883": f"{tls_port} 127.0.0.1", "1883 127.0.0.1": f"{plain_port} 127.0.0.1"}
    done: list[str] = []
    out = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if line.lstrip().startswith("#") or not key:
            out.append(line)
        elif key in PATH_KEYS:
            assert value.startswith(DATA_DIR + "/") and value in paths, line
            out.append(f"{key} {paths[value]}")
        elif key == "listener":
            out.append(f"listener {listeners[value]}")
            done.append(value)
        else:
            assert not value.startswith("/"), f"a path the test does not rewrite: {line}"
            out.append(line)
    assert sorted(done) == sorted(listeners)
    return "\n".join(out) + "\n"


@dataclass
class ShippedMosquitto(Mosquitto):
    """testkit's Mosquitto (start, stop, log), run from the rewritten shipped file. ``port``
    is the hub's loopback listener, ``tls_port`` the sites' listener. ``password_file`` is
    the file of every login (production's passwd), ``hub_password_file`` the hub's alone
    (passwd-hub); the shipped file picks which to use."""

    tls_port: int = 0
    template: str = ""
    pki: TlsFiles | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._hub_port = 0  # the hub's listener is ``port``: the shipped file has no third one

    def _write_config(self) -> Path:
        assert self.pki is not None and self.password_file is not None and self.acl_file is not None
        assert self.hub_password_file is not None
        paths = {f"{DATA_DIR}/mosquitto/passwd": self.password_file,
                 f"{DATA_DIR}/mosquitto/passwd-hub": self.hub_password_file,
                 f"{DATA_DIR}/mosquitto/acl": self.acl_file, f"{DATA_DIR}/ca/ca.crt": self.pki.ca_file,
                 f"{DATA_DIR}/ca/crl.pem": self.pki.dir / "crl.pem",
                 f"{DATA_DIR}/mosquitto/server.crt": self.pki.server_cert,
                 f"{DATA_DIR}/mosquitto/server.key": self.pki.server_key}
        # What Debian's main mosquitto.conf sets before it includes conf.d/, here for the test:
        # persistence into the test's directory, the log to stderr (testkit keeps it in log_path).
        main = [f"persistence_location {self.workdir / 'data'}/", "log_dest stderr"]
        if os.geteuid() == 0:
            # As root Mosquitto would switch to user "mosquitto", which may not read our files.
            main.append(f"user {pwd.getpwuid(0).pw_name}")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(main) + "\n" + rewrite(self.template, paths, self.tls_port, self.port))
        return conf

    def start(self, timeout: float = 10.0) -> ShippedMosquitto:
        super().start(timeout)
        wait_for(lambda: port_open(self.host, self.tls_port), timeout, what=f"the TLS listener on {self.tls_port}")
        return self


@dataclass
class Setup:
    broker: ShippedMosquitto
    pki: TlsFiles
    hub_password: str
    #: site-a's password, in the password file of every login (passwd), not in passwd-hub.
    site_password: str

    def hub(self, **kw: Any) -> TestClient:
        """A client on the loopback listener (the hub's login unless overridden)."""
        kw.setdefault("username", "hub")
        kw.setdefault("password", self.hub_password)
        return TestClient(self.broker.host, self.broker.port, **kw)

    def site(self, cn: str | None, **kw: Any) -> TestClient:
        """A client on the TLS listener, with a certificate for ``cn`` from the CA (none if None)."""
        if cn is not None:
            kw["cert_file"], kw["key_file"] = self.pki.client(cn)
        return TestClient(self.broker.host, self.broker.tls_port, ca_file=self.pki.ca_file, **kw)


@contextlib.contextmanager
def shipped_broker(tmp_path: Path) -> Iterator[Setup]:
    """The shipped file running, with a CA, the hub's and site-a's passwords and the ACL
    as `torwart-hub init` / `site add` write them."""
    pki = TlsFiles.make(tmp_path / "pki")
    # The CRL `torwart-hub init` writes (empty; `site revoke` rewrites it).
    (pki.dir / "crl.pem").write_bytes(make_crl(pki.ca, []))
    hub_password = secrets.token_urlsafe(18)
    files = tmp_path / "broker-files"
    files.mkdir()
    # As `torwart-hub init` / `site add` write them: every login's password (passwd), the
    # hub's alone (passwd-hub, which the shipped file uses), the ACL.
    site_password = secrets.token_urlsafe(18)
    passwd, hub_passwd, acl = files / "passwd", files / "passwd-hub", files / "acl"
    passwd.write_text(password_line("hub", hub_password) + "\n" + password_line("site-a", site_password) + "\n")
    hub_passwd.write_text(hub_password_lines(passwd, ("hub",)))
    for f in (passwd, hub_passwd):
        f.chmod(0o600)
    acl.write_text(acl_text(("hub",)))
    broker = ShippedMosquitto(tmp_path / "broker", tls_port=free_port(), template=TEMPLATE.read_text(encoding="utf-8"),
                              pki=pki, password_file=passwd, hub_password_file=hub_passwd, acl_file=acl)
    with broker:
        yield Setup(broker, pki, hub_password, site_password)


