"""A hub that sites join by code, on a real Mosquitto that uses the hub's own broker files
(password file, ACL, CA, CRL) and is reloaded by the hub (``[hub] broker_reload`` = SIGHUP
to the test's broker, as ``systemctl reload mosquitto`` would)."""

from __future__ import annotations

import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hub import config as config_mod
from hub.__main__ import main as hub_main
from hub.provision import broker_files, ca_paths, hub_password_lines
from hub.provision.hub_init import crl_path, set_broker_password, write_file_atomic
from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto, TlsFiles
from testkit.county import County, make_county
from testkit.util import free_port

CODE = re.compile(r"^\s+([0-9A-Z]{8}(?:-[0-9A-Z]{5}){4}-[0-9A-Z]{6})\s*$", re.M)
#: The brokers ``fleet_hub`` started, stopped after each test (tests/fleet/conftest.py).
STARTED: list[Mosquitto] = []


@dataclass
class FleetHub:
    county: County
    broker: Mosquitto
    cfg_path: Path
    passwords: dict[str, str]

    @property
    def cfg(self) -> config_mod.HubConfig:
        return config_mod.load(self.cfg_path, check_files=False)

    def hub(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = hub_main([*argv, "--config", str(self.cfg_path)])
        out, err = capsys.readouterr()
        return code, out, err

    def code_of(self, out: str) -> str:
        m = CODE.search(out)
        assert m is not None, out
        return m.group(1)

    def set_hub(self, **keys: Any) -> None:
        doc = tomllib.loads(self.cfg_path.read_text())
        doc["hub"].update(keys)
        self.cfg_path.write_text(tomli_w.dumps(doc))


def fleet_hub(tmp_path: Path, platform: BookingPlatform, sites: tuple[str, ...], *, joining: tuple[str, ...],
              tls: bool = False, cert_seconds: int | None = None) -> FleetHub:
    """A county of ``sites`` (each with a password login, by make_county) whose hub was
    initialised (CA, CRL, broker files); the sites in ``joining`` have no keys yet, on
    either side: they are to be added with ``site add`` and join. The broker runs. With
    ``tls`` the sites' listener wants client certificates from the hub's CA (and its CRL)."""
    data = tmp_path / "county" / "hub" / "data"
    files_dir = data / "mosquitto"
    broker = Mosquitto(tmp_path / "mq", password_file=files_dir / "passwd", acl_file=files_dir / "acl",
                       hub_password_file=files_dir / "passwd-hub", port=free_port())
    passwords = {s: secrets.token_urlsafe(12) for s in ("hub", *sites)}
    county = make_county(tmp_path / "county", broker, platform, sites, mqtt_users=passwords)
    for s in joining:
        (county.hub_config_path.parent / f"{s}.cred.key").unlink()
        for name in ("cred.key", "mqtt.password"):
            (county.sites[s].dir / name).unlink()
    fh = FleetHub(county, broker, county.hub_config_path, passwords)
    if cert_seconds is not None:
        fh.set_hub(site_cert_seconds=cert_seconds)
    cfg = fh.cfg
    assert hub_main(["init", "--config", str(fh.cfg_path), "--broker-host", "127.0.0.1"]) == 0
    files = broker_files(cfg)
    for user, pw in passwords.items():
        if user not in joining:
            set_broker_password(files.passwd, user, pw)
    write_file_atomic(files.hub_passwd, hub_password_lines(files.passwd, ("hub",)).encode())
    if tls:
        ca_cert, _ = ca_paths(cfg)
        broker.tls = TlsFiles(files_dir, None, ca_cert, files_dir / "server.crt",  # type: ignore[arg-type]
                              files_dir / "server.key")
        broker.crl_file = crl_path(cfg)
    broker.start()
    STARTED.append(broker)
    assert broker.proc is not None
    fh.set_hub(broker_reload=["kill", "-HUP", str(broker.proc.pid)])
    return fh


def add_site(fh: FleetHub, capsys: pytest.CaptureFixture[str], site: str, *, tls: bool,
             command: tuple[str, ...] = ("site", "add")) -> str:
    """``site add`` (or another command that prints a join code) for ``site``: the code."""
    code, out, err = fh.hub(capsys, *command, site, "--broker-host", fh.broker.host, "--broker-port",
                            str(fh.broker.port), "--tls" if tls else "--no-tls")
    assert code == 0, err
    return fh.code_of(out)


def join_site(fh: FleetHub, capsys: pytest.CaptureFixture[str], site: str, code: str, hub_url: str) -> None:
    """``torwart-edge join`` for ``site`` with ``code``, checked."""
    from edge.__main__ import main as edge_main

    capsys.readouterr()
    rc = edge_main(["join", "--hub", hub_url, "--code", code, "--config", str(fh.county.sites[site].config_path)])
    assert rc == 0, capsys.readouterr().err


def online(fh: FleetHub, site: str) -> bool:
    from hub.store import open_store

    with open_store(fh.cfg.hub.store_url) as store:
        st = store.site_state(site)
    return st is not None and st.online
