"""The broker's access matrix: four sites provisioned with hub.provision (passwords, client
certificates from the hub's CA, the PROTOCOL.md §2 ACL), on a real Mosquitto, by password
and by certificate. EVERY site tries EVERY topic kind of EVERY site, to write and to read:
exactly its own six write kinds and its own four read kinds get through, nothing of
another site does (a denied publish is answered "Not authorized" and reaches no one; a
subscription is granted but delivers nothing it may not read)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub import config, pki, provision, provision_site
from hub.provision_site import SiteBundle
from testkit.broker import Mosquitto, TlsFiles
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from tests.hub.test_provision import hub_config
from wire.topics import ROOT, SITE_READS, SITE_WRITES, Kind, topic

SITES = ("altdorf", "berg", "dorf", "eich")
KINDS = list(Kind)


def name(site: str, kind: Kind) -> str:
    return topic(site, kind, "eingang" if kind is Kind.DOOR else None)


@dataclass
class County:
    sites: dict[str, SiteBundle]
    hub_password: str
    hub_cert: tuple[Path, Path]
    password_broker: Mosquitto
    tls_broker: Mosquitto
    ca_file: Path


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[County]:
    root = tmp_path_factory.mktemp("county")
    path = hub_config(root)
    cfg = config.load(path, check_files=False)
    provision.init(cfg, broker_hosts=("127.0.0.1", "localhost"))
    bundles: dict[str, SiteBundle] = {}
    for s in SITES:
        bundle = provision_site.site_add(path, cfg, s, name=s, broker_host="127.0.0.1", tls=False)
        bundles[s] = bundle
        cfg = bundle.config
    files = provision.broker_files(cfg)
    ca_cert, ca_key = provision.ca_paths(cfg)
    ca = pki.load(ca_cert, ca_key)
    hub_cert = (root / "hub.crt", root / "hub.key")
    pki.issue(ca, "hub").write(*hub_cert)
    server = files.passwd.parent
    tls = TlsFiles(server, ca, ca_cert, server / "server.crt", server / "server.key")
    with Mosquitto(root / "pw-broker", password_file=files.passwd, acl_file=files.acl) as pw, \
            Mosquitto(root / "tls-broker", tls=tls, acl_file=files.acl) as tb:
        yield County(bundles, Path(cfg.mqtt.password_file or "").read_text().strip(), hub_cert, pw, tb, ca_cert)


@contextlib.contextmanager
def clients(county: County, how: str) -> Iterator[tuple[TestClient, dict[str, TestClient]]]:
    with contextlib.ExitStack() as stack:
        def make(user: str, **kw: Any) -> TestClient:
            broker = county.password_broker if how == "password" else county.tls_broker
            return stack.enter_context(TestClient(broker.host, broker.port, client_id=f"{how}-{user}", **kw))

        if how == "password":
            hub = make("hub", username="hub", password=county.hub_password)
            sites = {s: make(s, username=s, password=(b.dir / "mqtt.password").read_text().strip())
                     for s, b in county.sites.items()}
        else:
            hub = make("hub", ca_file=county.ca_file, cert_file=county.hub_cert[0], key_file=county.hub_cert[1])
            sites = {s: make(s, ca_file=county.ca_file, cert_file=b.dir / f"{s}.crt", key_file=b.dir / f"{s}.key")
                     for s, b in county.sites.items()}
        yield hub, sites


@pytest.mark.parametrize("how", ["password", "certificate"])
def test_every_site_writes_only_its_own_topics_of_the_kinds_it_may(county: County, how: str) -> None:
    with clients(county, how) as (hub, sites):
        hub.subscribe(f"{ROOT}/#")
        refused: set[tuple[str, str, Kind]] = set()
        for s, client in sites.items():
            for target, kind in itertools.product(SITES, KINDS):
                rc = client.publish(name(target, kind), f"{s}>{target}>{kind.value}".encode())
                if rc is not None and rc.is_failure:
                    refused.add((s, target, kind))
            client.publish(name(s, Kind.STATUS), f"marker {s}".encode())
        got: set[str] = set()
        markers: set[str] = set()

        def all_markers() -> bool:
            for msg in hub.drain():
                text = msg.payload.decode()
                (markers if text.startswith("marker") else got).add(text)
            return len(markers) == len(SITES)

        wait_for(all_markers, 20, what="every site's marker at the hub")
        allowed = {(s, s, k) for s in SITES for k in SITE_WRITES}
        everything = {(s, t, k) for s in SITES for t in SITES for k in KINDS}
        assert got == {f"{s}>{t}>{k.value}" for s, t, k in allowed}
        assert refused == everything - allowed  # each denied one answered "Not authorized"


@pytest.mark.parametrize("how", ["password", "certificate"])
def test_every_site_reads_only_its_own_topics_of_the_kinds_it_may(county: County, how: str) -> None:
    with clients(county, how) as (hub, sites):
        for client in sites.values():
            client.subscribe("#")  # granted, but filtered at delivery by the ACL
            for target, kind in itertools.product(SITES, KINDS):
                client.subscribe(name(target, kind))
        for target, kind in itertools.product(SITES, KINDS):
            rc = hub.publish(name(target, kind), f"{target}>{kind.value}".encode())
            assert rc is not None and not rc.is_failure
        for target in SITES:
            hub.publish(name(target, Kind.COMMAND), f"marker {target}".encode())
        for s, client in sites.items():
            got: set[str] = set()

            def marker(client: TestClient = client, got: set[str] = got, s: str = s) -> bool:
                done = False
                for msg in client.drain():
                    text = msg.payload.decode()
                    if text == f"marker {s}":
                        done = True
                    else:
                        got.add(f"{msg.topic} {text}")
                return done

            wait_for(marker, 20, what=f"the marker at {s}")
            assert got == {f"{name(s, k)} {s}>{k.value}" for k in SITE_READS}, s
