"""Provisioning: ``init`` makes the hub's keys and CA once; ``site_add`` makes a bundle a
Pi can use as it is (its site.toml loads, its certificate chains to the hub CA, its
password and the ACL work on a real Mosquitto) and records the site in the hub config."""

from __future__ import annotations

import contextlib
import grp
import os
import stat
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import edge.config as edge_config
from hub import config, provision
from hub.config import HubConfig
from hub.provision import ProvisionError, pki
from hub.provision import site as provision_site
from testkit.broker import Mosquitto, TlsFiles
from testkit.mqttclient import ConnectRefused, TestClient
from wire.keys import public_key_b64, read_key_file, signing_key_from_seed
from wire.topics import Kind, topic

Client = Callable[..., TestClient]

DECLARED = """
# Minheim: declared by the admin, provisioned by `site add minheim`.
[[sites]]
id = "minheim"
name = "Bürgerhaus Minheim"
cred_key_file = "data/sites/minheim/cred.key"

[[sites.rooms]]
id = "cowork"
name = "Coworking"
capacity = 8
resources = ["res-cowork"]
doors = ["main", "cowork"]

[[sites.rooms]]
id = "meeting"
resources = ["res-meeting"]
doors = ["main", "meeting"]
"""


def hub_config(root: Path, *, sites: str = DECLARED, base_url: str = "https://platform.example",
               mqtt_port: int = 1883, token: str = "generated-token", head: str = "") -> Path:
    """A hub config whose keys do not exist yet (``init`` makes them); the admin's
    comments are in it so that tests can see they survive."""
    secrets = root / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "token").write_text(token + "\n")
    (secrets / "token").chmod(0o600)
    text = head + textwrap.dedent(f"""\
        # Hub of Landkreis Beispiel: the admin's own comment.
        [hub]
        data_dir = "data"
        signing_key_file = "data/keys/signing.key"   # keep a backup of this one

        [mqtt]
        host = "127.0.0.1"
        port = {mqtt_port}
        username = "hub"
        password_file = "data/secrets/hub-mqtt.password"

        [booking]
        adapter = "rest"
        base_url = "{base_url}"
        token_file = "secrets/token"
        """) + sites
    path = root / "hub.toml"
    path.write_text(text)
    return path


def initialised(root: Path, **kw: Any) -> tuple[Path, HubConfig]:
    path = hub_config(root, **kw)
    cfg = config.load(path, check_files=False)
    provision.init(cfg)
    return path, cfg


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- init ---------------------------------------------------------------------------------


def test_init_creates_owner_only_keys_and_a_ca_once(tmp_path: Path) -> None:
    cfg = config.load(hub_config(tmp_path), check_files=False)
    created = provision.init(cfg)
    signing, enroll = Path(cfg.hub.signing_key_file), provision.enroll_key_path(cfg)
    ca_cert, ca_key = provision.ca_paths(cfg)
    files = provision.broker_files(cfg)
    hub_password = Path(cfg.mqtt.password_file or "")
    assert {signing, enroll, ca_cert, ca_key, files.passwd, files.acl, hub_password} <= {
        p for p in tmp_path.rglob("*") if p.is_file()}
    assert any("signing key" in c for c in created) and any("CA" in c for c in created)
    for secret in (signing, enroll, ca_key, files.passwd, hub_password):
        assert mode(secret) == 0o600, secret
    assert len(read_key_file(signing)) == len(read_key_file(enroll)) == 32
    assert pki.load(ca_cert, ca_key).cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert files.passwd.read_text().startswith("hub:$7$")

    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert provision.init(cfg) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_init_refuses_half_a_ca_instead_of_replacing_it(tmp_path: Path) -> None:
    _, cfg = initialised(tmp_path)
    ca_key = provision.ca_paths(cfg)[1]
    ca_key.unlink()
    with pytest.raises(ProvisionError, match="half a CA"):
        provision.init(cfg)
    assert not ca_key.exists()


# --- site add -------------------------------------------------------------------------------


def test_a_new_site_gets_a_bundle_that_loads_on_the_pi_and_a_block_in_the_hub_config(tmp_path: Path) -> None:
    path, cfg = initialised(tmp_path)
    original = path.read_text()
    bundle = provision_site.site_add(path, cfg, "altdorf", name='Dorfhaus "Altdorf"', broker_host="mqtt.example",
                                broker_port=8883, tls=True)

    assert bundle.dir == tmp_path / "data" / "provision" / "altdorf" and bundle.appended
    names = {p.name for p in bundle.dir.iterdir()}
    assert names == {"site.toml", "ca.crt", "altdorf.crt", "altdorf.key", "cred.key", "mqtt.password"}
    for secret in ("altdorf.key", "cred.key", "mqtt.password"):
        assert mode(bundle.dir / secret) == 0o600
    assert mode(bundle.dir) == 0o700

    site = edge_config.load(bundle.site_config)  # with its key files, as the agent loads it
    hub_key = signing_key_from_seed(read_key_file(cfg.hub.signing_key_file))
    assert site.site.id == "altdorf" and site.site.data_dir == "/var/lib/torwart"
    assert site.hub.signing_public_key == public_key_b64(hub_key)
    assert site.hub.enroll_public_key is not None
    assert (site.hub.host, site.hub.effective_port, site.hub.tls) == ("mqtt.example", 8883, True)
    assert edge_config.site_key(site) == read_key_file(bundle.hub_cred_key_file)
    assert [d.id for d in site.doors] == ["main"]

    # The hub config keeps every byte the admin wrote, and now names the site.
    text = path.read_text()
    assert text.startswith(original)
    reloaded = config.load(path, check_files=False)  # (declared minheim has no key yet)
    assert reloaded.site("altdorf").name == 'Dorfhaus "Altdorf"'
    assert Path(reloaded.site("altdorf").cred_key_file) == bundle.hub_cred_key_file


def test_the_site_certificate_chains_to_the_hub_ca_with_the_site_id_as_cn(tmp_path: Path) -> None:
    path, cfg = initialised(tmp_path)
    bundle = provision_site.site_add(path, cfg, "altdorf", name="Altdorf", broker_host="h", tls=True)
    cert = x509.load_pem_x509_certificate((bundle.dir / "altdorf.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((bundle.dir / "ca.crt").read_bytes())
    assert (bundle.dir / "ca.crt").read_bytes() == provision.ca_paths(cfg)[0].read_bytes()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "altdorf"
    assert cert.issuer == ca.subject
    ca_pub = ca.public_key()
    assert isinstance(ca_pub, ec.EllipticCurvePublicKey) and cert.signature_hash_algorithm is not None
    ca_pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    key = pki.load(bundle.dir / "altdorf.crt", bundle.dir / "altdorf.key")
    assert key.key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_a_declared_site_is_provisioned_with_its_rooms_and_distinct_placeholder_pins(tmp_path: Path) -> None:
    path, cfg = initialised(tmp_path)
    original = path.read_text()
    bundle = provision_site.site_add(path, cfg, "minheim", name="Minheim", broker_host="mqtt.example", tls=False)
    assert not bundle.appended and path.read_text() == original
    site = edge_config.load(bundle.site_config)
    assert [(r.id, r.capacity) for r in site.rooms] == [("cowork", 8), ("meeting", None)]
    assert [(d.id, d.room) for d in site.doors] == [("main", None), ("cowork", "cowork"), ("meeting", "meeting")]
    assert len({d.lock_pin for d in site.doors}) == 3
    assert "PLACEHOLDER" in bundle.site_config.read_text().split("[site]")[0]
    assert (site.hub.username, site.hub.effective_port, site.hub.tls) == ("minheim", 1883, False)
    assert edge_config.read_password(site)
    assert read_key_file(cfg.site("minheim").cred_key_file) == edge_config.site_key(site)
    config.load(path)  # the declared key now exists


def _add_or_declare(how: str, path: Path, cfg: HubConfig, site_id: str) -> object:
    """A site added with its bundle (``site add --bundle``) or declared to join by code."""
    if how == "add":
        return provision_site.site_add(path, cfg, site_id, name="x", broker_host="h", tls=False)
    return provision_site.site_declare(path, cfg, site_id, name="x")


@pytest.mark.parametrize("how", ["add", "declare"])
@pytest.mark.parametrize("bad", ["Altdorf", "-x", "a" * 65, "a/b", ""])
def test_a_bad_site_id_is_refused_and_nothing_is_written(tmp_path: Path, bad: str, how: str) -> None:
    path, cfg = initialised(tmp_path)
    original = path.read_text()
    with pytest.raises(ProvisionError, match="not a valid site id"):
        _add_or_declare(how, path, cfg, bad)
    assert path.read_text() == original
    assert not (tmp_path / "data" / "provision").exists()


@pytest.mark.parametrize("how", ["add", "declare"])
def test_a_site_named_like_the_hubs_broker_user_is_refused_and_nothing_is_written(tmp_path: Path, how: str) -> None:
    path, cfg = initialised(tmp_path)
    files = provision.broker_files(cfg)
    passwd, acl = files.passwd, files.acl
    before = (path.read_text(), passwd.read_bytes(), acl.read_bytes())
    with pytest.raises(ProvisionError, match="broker user"):
        _add_or_declare(how, path, cfg, provision.hub_mqtt_user(cfg))
    assert (path.read_text(), passwd.read_bytes(), acl.read_bytes()) == before
    assert not (tmp_path / "data" / "provision").exists()


def test_a_site_named_like_a_hub_client_id_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    # The broker makes a site's id its client id: this one would throw the hub off.
    path, cfg = initialised(tmp_path)
    files = provision.broker_files(cfg)
    before = (path.read_text(), files.passwd.read_bytes(), files.hub_passwd.read_bytes(), files.acl.read_bytes())
    with pytest.raises(ProvisionError, match="client id of the hub"):
        provision_site.site_add(path, cfg, cfg.mqtt.client_id, name="x", broker_host="h", tls=True)
    assert (path.read_text(), files.passwd.read_bytes(), files.hub_passwd.read_bytes(),
            files.acl.read_bytes()) == before
    assert not (tmp_path / "data" / "provision").exists()


def test_a_provisioned_site_is_not_provisioned_twice(tmp_path: Path) -> None:
    path, cfg = initialised(tmp_path)
    first = provision_site.site_add(path, cfg, "altdorf", name="x", broker_host="h", tls=False)
    key = first.hub_cred_key_file.read_bytes()
    text = path.read_text()
    for c in (first.config, cfg):
        with pytest.raises(ProvisionError, match=r"already|exists"):
            provision_site.site_add(path, c, "altdorf", name="x", broker_host="h", tls=False,
                               out_dir=tmp_path / "elsewhere")
    assert first.hub_cred_key_file.read_bytes() == key and path.read_text() == text


def test_site_add_needs_an_initialised_hub(tmp_path: Path) -> None:
    path = hub_config(tmp_path)
    with pytest.raises(ProvisionError, match="torwart-hub init"):
        provision_site.site_add(path, config.load(path, check_files=False), "altdorf", name="x", broker_host="h",
                           tls=False)


def test_an_addition_that_would_break_the_config_changes_nothing(tmp_path: Path) -> None:
    # An inline `sites = []` cannot take a [[sites]] block: the reload refuses it.
    path, cfg = initialised(tmp_path, sites="", head="sites = []\n")
    original = path.read_text()
    passwd = provision.broker_files(cfg).passwd.read_text()
    with pytest.raises(ProvisionError, match="invalid"):
        provision_site.site_add(path, cfg, "altdorf", name="x", broker_host="h", tls=False)
    assert path.read_text() == original
    assert provision.broker_files(cfg).passwd.read_text() == passwd
    assert not (tmp_path / "data" / "sites").exists() and not (tmp_path / "data" / "provision").exists()


# --- on a real broker ---------------------------------------------------------------------------


def clients(broker: Mosquitto, stack: contextlib.ExitStack) -> Client:
    """Connects test clients that are closed before the broker stops (no reconnect waits)."""

    def make(**kw: Any) -> TestClient:
        return stack.enter_context(TestClient(broker.host, broker.port, **kw))

    return make


def test_provisioned_passwords_and_acl_keep_each_site_to_its_own_topics(tmp_path: Path) -> None:
    path, cfg = initialised(tmp_path)
    a = provision_site.site_add(path, cfg, "altdorf", name="A", broker_host="127.0.0.1", tls=False)
    b = provision_site.site_add(path, a.config, "berg", name="B", broker_host="127.0.0.1", tls=False)
    files = provision.broker_files(cfg)
    with Mosquitto(tmp_path / "broker", password_file=files.passwd, acl_file=files.acl) as broker, \
            contextlib.ExitStack() as stack:
        mqtt_client = clients(broker, stack)
        hub = mqtt_client(username="hub", password=Path(cfg.mqtt.password_file or "").read_text().strip())
        site_a = mqtt_client(username="altdorf", password=(a.dir / "mqtt.password").read_text().strip())
        mqtt_client(username="berg", password=(b.dir / "mqtt.password").read_text().strip())

        hub.subscribe("torwart/v1/site/+/status")
        site_a.publish(topic("berg", Kind.STATUS), b"forged for berg")
        site_a.publish(topic("altdorf", Kind.STATUS), b"altdorf online")
        msg = hub.expect(timeout=5)
        assert (msg.topic, msg.payload) == (topic("altdorf", Kind.STATUS), b"altdorf online")

        hub.publish(topic("berg", Kind.CACHE), b"cache of berg", retain=True)
        hub.publish(topic("altdorf", Kind.CACHE), b"cache of altdorf", retain=True)
        site_a.subscribe(topic("berg", Kind.CACHE))
        site_a.subscribe(topic("altdorf", Kind.CACHE))
        assert site_a.expect(timeout=5).payload == b"cache of altdorf"  # berg's would have come first
        assert site_a.drain() == []

        with pytest.raises(ConnectRefused):
            mqtt_client(username="altdorf", password=(b.dir / "mqtt.password").read_text().strip())


def test_the_hub_listeners_password_file_holds_the_hubs_login_only(tmp_path: Path) -> None:
    path, cfg = initialised(tmp_path)
    files = provision.broker_files(cfg)
    hub_line = files.hub_passwd.read_text()
    assert hub_line.startswith("hub:$7$") and hub_line.count("\n") == 1 and mode(files.hub_passwd) == 0o600
    assert hub_line in files.passwd.read_text()
    a = provision_site.site_add(path, cfg, "altdorf", name="A", broker_host="127.0.0.1", tls=False)
    assert files.hub_passwd.read_text() == hub_line  # a site never gets in there
    assert "altdorf:" in files.passwd.read_text()

    # An installation from before passwd-hub: init writes it from passwd, nothing else.
    files.hub_passwd.unlink()
    created = provision.init(config.load(path, check_files=False))
    assert len(created) == 1 and str(files.hub_passwd) in created[0]
    assert files.hub_passwd.read_text() == hub_line

    hub_password = Path(cfg.mqtt.password_file or "").read_text().strip()
    site_password = (a.dir / "mqtt.password").read_text().strip()
    with Mosquitto(tmp_path / "broker", password_file=files.passwd, hub_password_file=files.hub_passwd,
                   acl_file=files.acl) as broker, contextlib.ExitStack() as stack:
        def login(port: int, user: str, password: str) -> TestClient:
            return stack.enter_context(TestClient(broker.host, port, username=user, password=password,
                                                  client_id="torwart-hub", timeout=5))

        login(broker.hub_port, "hub", hub_password)
        login(broker.port, "altdorf", site_password)  # the sites' listener
        with pytest.raises(ConnectRefused):
            login(broker.hub_port, "altdorf", site_password)


def test_the_site_certificate_logs_in_over_tls_to_a_broker_certified_by_init(tmp_path: Path) -> None:
    path = hub_config(tmp_path)
    cfg = config.load(path, check_files=False)
    provision.init(cfg, broker_hosts=("127.0.0.1", "localhost"))
    bundle = provision_site.site_add(path, cfg, "altdorf", name="A", broker_host="127.0.0.1", tls=True)
    ca_cert, ca_key = provision.ca_paths(cfg)
    server = provision.broker_files(cfg).passwd.parent
    tls = TlsFiles(server, pki.load(ca_cert, ca_key), ca_cert, server / "server.crt", server / "server.key")
    with Mosquitto(tmp_path / "tls-broker", tls=tls, acl_file=provision.broker_files(cfg).acl) as broker, \
            contextlib.ExitStack() as stack:
        site = clients(broker, stack)(ca_file=bundle.dir / "ca.crt", cert_file=bundle.dir / "altdorf.crt",
                           key_file=bundle.dir / "altdorf.key")
        site.subscribe(topic("altdorf", Kind.CACHE))
        rc = site.publish(topic("altdorf", Kind.STATUS), b"online")
        assert rc is not None and not rc.is_failure


def test_init_with_a_broker_group_shares_only_what_the_broker_opens(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name  # a group this test may chgrp to (its own)
    gid = grp.getgrnam(group).gr_gid
    path = hub_config(tmp_path)
    cfg = config.load(path, check_files=False)
    created = provision.init(cfg, broker_hosts=("127.0.0.1",), broker_group=group)
    files = provision.broker_files(cfg)
    ca_cert, ca_key = provision.ca_paths(cfg)
    server = files.passwd.parent / "server.crt", files.passwd.parent / "server.key"
    for p in (files.passwd, files.hub_passwd, files.acl, *server):
        assert (mode(p), p.stat().st_gid) == (0o640, gid), p
    assert (mode(ca_cert), ca_cert.stat().st_gid) == (0o644, gid)
    for d in (cfg.hub.data_path, files.passwd.parent, ca_cert.parent):
        assert (mode(d), d.stat().st_gid) == (0o710, gid), d  # pass through, not list
    # Nothing else: the keys stay private to the hub's user.
    for secret in (ca_key, Path(cfg.hub.signing_key_file), provision.enroll_key_path(cfg)):
        assert mode(secret) == 0o600, secret
    assert any("broker's group" in c for c in created)
    # A second run changes nothing; a site added later keeps the broker's access.
    assert provision.init(config.load(path, check_files=False), broker_hosts=("127.0.0.1",),
                          broker_group=group) == []
    provision_site.site_add(path, cfg, "altdorf", name="A", broker_host="127.0.0.1", tls=True)
    for p in (files.passwd, files.hub_passwd, files.acl):
        assert (mode(p), p.stat().st_gid) == (0o640, gid), p


def test_init_refuses_an_unknown_broker_group_before_writing_anything(tmp_path: Path) -> None:
    path = hub_config(tmp_path)
    cfg = config.load(path, check_files=False)
    with pytest.raises(ProvisionError, match="no group named"):
        provision.init(cfg, broker_group="no-such-group-xyz")
    assert not cfg.hub.data_path.exists()
