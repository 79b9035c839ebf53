"""The broker's access matrix: four sites provisioned with hub.provision (passwords, client
certificates from the hub's CA, the PROTOCOL.md §2 ACL), on a real Mosquitto, by password
and by certificate. EVERY site tries EVERY topic kind of EVERY site, to write and to read:
exactly its own six write kinds and its own four read kinds get through, nothing of
another site does (a denied publish is answered "Not authorized" and reaches no one; a
subscription is granted but delivers nothing it may not read). And no site's login can
take the hub's or another site's client id (which would throw that client off)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub import config, provision
from hub.provision import SiteBundle, pki
from hub.provision import site as provision_site
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
    with Mosquitto(root / "pw-broker", password_file=files.passwd, hub_password_file=files.hub_passwd,
                   acl_file=files.acl) as pw, \
            Mosquitto(root / "tls-broker", tls=tls, acl_file=files.acl) as tb:
        yield County(bundles, Path(cfg.mqtt.password_file or "").read_text().strip(), hub_cert, pw, tb, ca_cert)


@contextlib.contextmanager
def clients(county: County, how: str) -> Iterator[tuple[TestClient, dict[str, TestClient]]]:
    with contextlib.ExitStack() as stack:
        def make(user: str, **kw: Any) -> TestClient:
            broker = county.password_broker if how == "password" else county.tls_broker
            port = broker.hub_port if user == "hub" else broker.port
            return stack.enter_context(TestClient(broker.host, port, client_id=f"{how}-{user}", **kw))

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


@pytest.mark.parametrize("how", ["password", "certificate"])
def test_no_sites_login_takes_the_hubs_or_another_sites_client_id(county: County, how: str) -> None:
    broker = county.password_broker if how == "password" else county.tls_broker
    attacker, *others = SITES
    with contextlib.ExitStack() as stack:
        def connect(user: str, client_id: str, port: int | None = None) -> TestClient:
            if how == "password":
                secret = (county.hub_password if user == "hub"
                          else (county.sites[user].dir / "mqtt.password").read_text())
                kw: dict[str, Any] = {"username": user, "password": secret.strip()}
            elif user == "hub":
                kw = {"ca_file": county.ca_file, "cert_file": county.hub_cert[0], "key_file": county.hub_cert[1]}
            else:
                b = county.sites[user]
                kw = {"ca_file": county.ca_file, "cert_file": b.dir / f"{user}.crt", "key_file": b.dir / f"{user}.key"}
            return stack.enter_context(TestClient(broker.host, port or broker.port, client_id=client_id, **kw))

        # The victims: the hub (by password on its own listener: the service and a command
        # line side by side under one login; by certificate: its CN), and every other site.
        hub_ids = ["torwart-hub", "torwart-hub-cli-0a1b2c3d"] if how == "password" else ["hub"]
        hubs = [connect("hub", cid, broker.hub_port) for cid in hub_ids]
        victims = {cid: c for cid, c in zip(hub_ids, hubs, strict=True)}
        victims |= {s: connect(s, f"torwart-site-{s}") for s in others}
        for c in victims.values():
            c.c.reconnect_delay_set(min_delay=300, max_delay=300)  # once thrown off, stay off
        hubs[0].subscribe(f"{ROOT}/+/status")
        for s in others:
            victims[s].subscribe(name(s, Kind.COMMAND))
        # The attacker: one site's login under every victim's client id (and each site's id).
        taken = [*hub_ids, *(f"torwart-site-{s}" for s in others), *others]
        for cid in taken:
            last = connect(attacker, cid)
        rc = last.publish(name(attacker, Kind.STATUS), b"attacker")  # its own topic, so accepted
        assert rc is not None and not rc.is_failure

        # Every victim is still connected, never was thrown off, and still gets its messages.
        assert hubs[0].expect(timeout=10).payload == b"attacker"
        for s in others:
            victims[s].publish(name(s, Kind.STATUS), f"marker {s}".encode())
            hubs[0].publish(name(s, Kind.COMMAND), f"marker {s}".encode())
        got = {hubs[0].expect(timeout=10).payload for _ in others}
        assert got == {f"marker {s}".encode() for s in others}
        for s in others:
            assert victims[s].expect(timeout=10).payload == f"marker {s}".encode()
        for cid, c in victims.items():
            assert c.connects == 1 and c.c.is_connected(), f"{cid} was thrown off"
