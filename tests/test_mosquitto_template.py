"""The shipped broker configuration, firmware_configs/mosquitto/torwart.conf, on a real
Mosquitto.

The file is read as shipped; only its file paths (into a temporary directory) and its two
listeners (free loopback ports) are rewritten, and what Debian's main mosquitto.conf adds
in production (persistence_location, the log) is put in front of it. Certificates come
from a CA made here, the password file and the ACL from hub/provision/mosquitto.py, as
provisioning writes them. Then: the hub logs in on the loopback listener with its
password, sites with client certificates on the TLS listener, the PROTOCOL.md §2 ACL
holds, no login takes another's client id (a site's certificate cannot throw the hub or
another site off; a site's password does not open the hub's listener), and packets above
max_packet_size are refused while a 16 MiB cache goes through.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import PolicySection
from hub import config, provision
from hub.config import MqttSection
from hub.link import HubLink, share_group
from testkit.broker import TlsFiles, mosquitto_binary
from testkit.mqttclient import ConnectRefused, TestClient
from testkit.util import wait_for
from wire.envelope import DEFAULT_LIMIT
from wire.topics import ROOT, Kind, topic

from .shipped_broker import DATA_DIR, REPO, TEMPLATE, Setup, shipped_broker

HUB_UNIT = REPO / "firmware_configs" / "systemd" / "torwart-hub.service"
MAX_PACKET = 16 * 1024 * 1024 + 64 * 1024
#: What Debian's main /etc/mosquitto/mosquitto.conf sets; the drop-in must not.
DEBIAN_MAIN_KEYS = ("pid_file", "persistence_location", "log_dest", "include_dir", "user")


def directives(text: str) -> list[tuple[str, str]]:
    """(option, value) of every non-comment line, in order."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            key, _, value = s.partition(" ")
            out.append((key, value.strip()))
    return out


def listener_blocks(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(the global options before the first listener, each ``listener`` line's value → the
    options that follow it up to the next one); an option set twice in one place fails."""
    glob: dict[str, str] = {}
    blocks: dict[str, dict[str, str]] = {}
    current = glob
    for key, value in directives(text):
        if key == "listener":
            assert value not in blocks, f"listener {value} twice"
            current = blocks[value] = {}
        else:
            assert key not in current, f"{key} set twice"
            current[key] = value
    return glob, blocks


# --- the file as shipped ------------------------------------------------------------------


def test_template_sets_what_the_hubs_broker_needs() -> None:
    d, blocks = listener_blocks(TEMPLATE.read_text(encoding="utf-8"))
    # Each listener has its own logins: the hub's listener must not take a site's password.
    assert d["per_listener_settings"] == "true"
    assert d["persistence"] == "true"
    assert int(d["autosave_interval"]) > 0
    assert d["persistent_client_expiration"] == "30d"
    assert int(d["max_queued_messages"]) >= 10000
    assert int(d["max_queued_bytes"]) >= 2 * MAX_PACKET  # bounded, yet room for a full cache or two
    assert "max_inflight_messages" not in d
    assert "message_size_limit" not in d  # deprecated in Mosquitto 2
    assert not set(d) & set(DEBIAN_MAIN_KEYS), "repeats what Debian's mosquitto.conf sets"
    assert not set(d) & {"allow_anonymous", "password_file", "acl_file"}, "per listener, not global"
    # The largest legitimate packet, a site's biggest signed cache, fits with room for the
    # topic and the MQTT header; nothing much bigger does.
    assert PolicySection().max_envelope_bytes == DEFAULT_LIMIT == 16 * 1024 * 1024
    assert int(d["max_packet_size"]) == MAX_PACKET == DEFAULT_LIMIT + 64 * 1024

    assert set(blocks) == {"8883", "1883 127.0.0.1"}
    assert blocks["8883"] == {
        "allow_anonymous": "false",
        "acl_file": f"{DATA_DIR}/mosquitto/acl",
        "cafile": f"{DATA_DIR}/ca/ca.crt",
        "crlfile": f"{DATA_DIR}/ca/crl.pem",  # revoked site certificates (torwart-hub site revoke)
        "certfile": f"{DATA_DIR}/mosquitto/server.crt",
        "keyfile": f"{DATA_DIR}/mosquitto/server.key",
        "require_certificate": "true",
        "use_identity_as_username": "true",
        "use_username_as_clientid": "true",  # a site's client id is its certificate's CN
        "tls_version": "tlsv1.2",
    }
    assert blocks["1883 127.0.0.1"] == {  # plain, loopback only, the hub's login only
        "allow_anonymous": "false",
        "password_file": f"{DATA_DIR}/mosquitto/passwd-hub",
        "acl_file": f"{DATA_DIR}/mosquitto/acl",
    }


def test_template_paths_are_where_provisioning_writes_them(tmp_path: Path) -> None:
    unit = HUB_UNIT.read_text(encoding="utf-8")
    assert re.search(r"^StateDirectory=torwart-hub$", unit, re.MULTILINE)  # = /var/lib/torwart-hub
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text(textwrap.dedent(f"""\
        [hub]
        data_dir = "{DATA_DIR}"
        signing_key_file = "{DATA_DIR}/keys/signing.key"
        [mqtt]
        host = "127.0.0.1"
        [booking]
        adapter = "rest"
        base_url = "https://platform.example"
        token_file = "/etc/torwart/platform.token"
        """))
    cfg = config.load(hub_toml, check_files=False)
    files = provision.broker_files(cfg)
    ca_cert, _ = provision.ca_paths(cfg)
    opts = directives(TEMPLATE.read_text(encoding="utf-8"))
    d = dict(opts)
    assert d["password_file"] == str(files.hub_passwd)  # the hub listener's: the hub's login only
    assert {v for k, v in opts if k == "acl_file"} == {str(files.acl)}
    assert d["cafile"] == str(ca_cert)
    assert d["crlfile"] == str(provision.crl_path(cfg))  # init writes it, site revoke rewrites it
    # where `torwart-hub init --broker-host NAME` writes the broker's server pair
    assert d["certfile"] == str(files.passwd.parent / "server.crt")
    assert d["keyfile"] == str(files.passwd.parent / "server.key")


# --- the file on a real Mosquitto ---------------------------------------------------------


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[Setup]:
    try:
        mosquitto_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with shipped_broker(tmp_path) as setup:
        yield setup


#: ``clients(lambda: shipped.hub())``: connect a client that is closed after the test.
Open = Callable[[Callable[[], TestClient]], TestClient]


@pytest.fixture
def clients() -> Iterator[Open]:
    with contextlib.ExitStack() as stack:
        yield lambda make: stack.enter_context(make())


def cache(site: str) -> str:
    return topic(site, Kind.CACHE)


def test_hub_logs_in_on_loopback_with_its_password_and_may_publish_every_sites_cache(
    shipped: Setup, clients: Open
) -> None:
    hub = clients(lambda: shipped.hub(client_id="hub"))
    watcher = clients(lambda: shipped.hub(client_id="hub-watcher"))
    watcher.subscribe(f"{ROOT}/+/cache")
    for site in ("site-a", "site-b", "site-c"):
        rc = hub.publish(cache(site), f"cache for {site}".encode(), retain=True)
        assert rc is not None and not rc.is_failure, (site, rc)
    got = {watcher.expect(timeout=10).topic for _ in range(3)}
    assert got == {cache(s) for s in ("site-a", "site-b", "site-c")}


def test_loopback_refuses_a_wrong_password_a_sites_password_and_anonymous_clients(shipped: Setup) -> None:
    with pytest.raises(ConnectRefused):
        shipped.hub(password="not-" + shipped.hub_password, timeout=5)
    with pytest.raises(ConnectRefused):
        shipped.hub(username="site-a", password="guess", timeout=5)
    # A site's real password does not open the hub's listener, where client ids are free.
    with pytest.raises(ConnectRefused):
        shipped.hub(username="site-a", password=shipped.site_password, client_id="torwart-hub", timeout=5)
    with pytest.raises(ConnectRefused):
        shipped.hub(username=None, password=None, timeout=5)  # anonymous


def test_site_with_a_certificate_reads_its_own_cache_and_cannot_write_another_sites_event(
    shipped: Setup, clients: Open
) -> None:
    hub = clients(lambda: shipped.hub(client_id="hub"))
    site = clients(lambda: shipped.site("site-a", client_id="site-a"))
    site.subscribe(cache("site-b"))  # granted, but the ACL lets nothing through
    site.subscribe(cache("site-a"))
    hub.subscribe(f"{ROOT}/+/event")

    # The hub publishes site-b's cache first, then site-a's: site-a gets its own only.
    hub.publish(cache("site-b"), b"not for site-a", retain=True)
    hub.publish(cache("site-a"), b"cache for site-a", retain=True)
    msg = site.expect(timeout=10)
    assert (msg.topic, msg.payload) == (cache("site-a"), b"cache for site-a")

    # A forged event for site-b is refused; the marker on site-a's own event topic, sent
    # after it, arrives, and nothing came before it.
    rc = site.publish(topic("site-b", Kind.EVENT), b"forged by site-a")
    assert rc is not None and rc.is_failure, rc  # "Not authorized"
    site.publish(topic("site-a", Kind.EVENT), b"marker")
    msg = hub.expect(timeout=10)
    assert (msg.topic, msg.payload) == (topic("site-a", Kind.EVENT), b"marker")
    assert site.drain() == []


def test_tls_listener_refuses_clients_without_a_certificate_from_the_ca(shipped: Setup) -> None:
    with pytest.raises(ConnectRefused):
        shipped.site(None, timeout=5)
    with pytest.raises(ConnectRefused):  # the hub's password does not open the TLS listener
        shipped.site(None, username="hub", password=shipped.hub_password, timeout=5)
    rogue = TlsFiles.make(shipped.pki.dir / "rogue")
    cert, key = rogue.client("site-a")
    with pytest.raises(ConnectRefused):
        shipped.site(None, cert_file=cert, key_file=key, timeout=5)


def test_a_16_mib_cache_goes_through_and_a_packet_above_max_packet_size_is_refused(
    shipped: Setup, clients: Open
) -> None:
    hub = clients(lambda: shipped.hub(client_id="hub"))
    site = clients(lambda: shipped.site("site-a", client_id="site-a"))
    site.subscribe(cache("site-a"))

    largest = os.urandom(16 * 1024 * 1024)  # a cache envelope of the size sites accept at most
    digest = hashlib.sha256(largest).digest()
    rc = hub.publish(cache("site-a"), largest, retain=True, timeout=60)
    assert rc is not None and not rc.is_failure, rc
    del largest
    msg = site.expect(cache("site-a"), timeout=60)
    assert len(msg.payload) == 16 * 1024 * 1024 and hashlib.sha256(msg.payload).digest() == digest
    del msg

    big = clients(lambda: shipped.hub(client_id="hub-big"))
    big.c.reconnect_delay_set(min_delay=300, max_delay=300)  # stay disconnected once thrown out
    gone = threading.Event()
    reasons: list[str] = []
    inner: Callable[..., object] | None = big.c.on_disconnect

    def on_disconnect(c: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        reasons.append(str(rc))
        gone.set()
        if inner is not None:
            inner(c, ud, flags, rc, props)

    big.c.on_disconnect = on_disconnect
    too_big = bytes(MAX_PACKET)  # the payload alone is max_packet_size: the packet is bigger
    big.c.publish(cache("site-a"), too_big, qos=1)
    del too_big
    assert gone.wait(60), "the broker kept a client that sent a packet above max_packet_size"

    # The broker runs on and never passed it on: the next message is the marker.
    assert shipped.broker.running
    hub.publish(cache("site-a"), b"marker", retain=True)
    msg = site.expect(timeout=10)
    assert (msg.topic, msg.payload) == (cache("site-a"), b"marker")


# --- client ids: nobody takes another's ------------------------------------------------------


def stays(client: TestClient) -> TestClient:
    """A victim: once thrown off it stays off (paho would otherwise reconnect at once)."""
    client.c.reconnect_delay_set(min_delay=300, max_delay=300)
    return client


def still_there(client: TestClient, probe: Callable[[], object], name: str) -> None:
    """``client`` was never disconnected and still receives: ``probe()`` sends it a marker."""
    probe()
    msg = client.expect(timeout=10)
    assert msg.payload == b"marker", msg
    assert client.connects == 1 and client.c.is_connected(), f"{name} was thrown off"


def test_a_sites_certificate_cannot_take_the_hubs_or_another_sites_client_id(shipped: Setup, clients: Open) -> None:
    hub = clients(lambda: stays(shipped.hub(client_id="torwart-hub")))
    cli = clients(lambda: stays(shipped.hub(client_id="torwart-hub-cli-0a1b2c3d")))  # `torwart-hub push`
    site_b = clients(lambda: stays(shipped.site("site-b", client_id="torwart-site-site-b")))
    for c in (hub, cli):
        c.subscribe(topic("site-b", Kind.STATUS))
    site_b.subscribe(cache("site-b"))
    # site-a's certificate, under each victim's client id (and the CN of another site):
    for victim_id in ("torwart-hub", "torwart-hub-cli-0a1b2c3d", "torwart-site-site-b", "site-b"):
        clients(lambda victim_id=victim_id: shipped.site("site-a", client_id=victim_id))  # type: ignore[misc]
    still_there(hub, lambda: site_b.publish(topic("site-b", Kind.STATUS), b"marker"), "the hub")
    still_there(cli, lambda: None, "the hub's command line")
    still_there(site_b, lambda: hub.publish(cache("site-b"), b"marker"), "site-b")
    # The broker threw off only site-a's own earlier connections (its own login, its own id).
    log = shipped.broker.log_path.read_text(errors="replace")
    taken = {line.split("Client ", 1)[1].split(" ")[0] for line in log.splitlines() if "already connected" in line}
    assert taken == {"site-a"}, taken


def test_a_sites_session_resumes_under_its_certificates_name_whatever_client_id_it_sends(
    shipped: Setup, clients: Open
) -> None:
    hub = clients(lambda: shipped.hub(client_id="torwart-hub"))
    site = shipped.site("site-a", client_id="torwart-site-site-a", clean_start=False, session_expiry=3600)
    site.subscribe(topic("site-a", Kind.COMMAND))
    site.close()
    hub.publish(topic("site-a", Kind.COMMAND), b"while away")  # queued in site-a's session
    again = clients(lambda: shipped.site("site-a", client_id="anything-else", clean_start=False, session_expiry=3600))
    msg = again.expect(timeout=10)
    assert (msg.topic, msg.payload) == (topic("site-a", Kind.COMMAND), b"while away")
    assert "as site-a (" in shipped.broker.log_path.read_text(errors="replace")


# --- the hub's shared subscription: no site takes a share ----------------------------------


class Sink:
    """What a hub process's link hands over: (site, payload) of each event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def link_up(self) -> None:
        """Nothing to do on connect."""

    def site_message(self, site: str, kind: Kind, door: str | None, payload: bytes) -> None:
        if kind is Kind.EVENT:
            with self.lock:
                self.events.append((site, payload))


def test_sites_joining_the_hubs_old_share_group_take_no_share_of_the_hubs_events(
    shipped: Setup, clients: Open, tmp_path: Path
) -> None:
    pw = tmp_path / "hub.password"
    pw.write_text(shipped.hub_password + "\n")
    pw.chmod(0o600)
    group = share_group(secrets.token_bytes(32))
    sinks = [Sink(), Sink()]
    links = [HubLink(MqttSection(host=shipped.broker.host, port=shipped.broker.port, username="hub",
                                 password_file=str(pw), client_id=f"torwart-hub-w{i}", shared_subscription=True),
                     sink, persistent=False, subscribe=(Kind.EVENT,), share_group=group)
             for i, sink in enumerate(sinks)]
    with contextlib.ExitStack() as stack:
        for link in links:
            link.start()
            stack.callback(link.stop)
        assert all(link.wait_connected(10) for link in links)
        intruders = [clients(lambda s=s: shipped.site(s)) for s in ("site-c", "site-d", "site-e")]  # type: ignore[misc]
        for c in intruders:
            c.subscribe(f"$share/hub/{ROOT}/+/event")
        sender = clients(lambda: shipped.site("site-a"))
        # The hub's subscription is in place once a marker comes through.
        wait_for(lambda: sender.publish(topic("site-a", Kind.EVENT), b"marker") is not None
                 and any(p == b"marker" for s in sinks for _, p in s.events), 10, what="the hub subscribed")
        for s in sinks:
            s.events.clear()
        for n in range(200):
            rc = sender.publish(topic("site-a", Kind.EVENT), f"event {n}".encode())
            assert rc is not None and not rc.is_failure

        def events() -> list[bytes]:
            return sorted(p for s in sinks for _, p in list(s.events) if p != b"marker")

        wait_for(lambda: len(events()) >= 200, 20, what="all 200 events at the hub")
        got = events()
        assert got == sorted(f"event {n}".encode() for n in range(200))  # each once, none missing
        assert all(s.events for s in sinks)  # and the two processes split them
        assert [c.drain() for c in intruders] == [[], [], []]


def test_a_revoked_certificate_is_refused_after_a_reload_and_the_hubs_eviction_throws_its_connection_off(
    shipped: Setup, clients: Open, tmp_path: Path
) -> None:
    """What `torwart-hub site revoke` relies on: Mosquitto re-reads the CRL on SIGHUP and
    refuses the certificate from then on, but leaves an open connection alone; the hub's
    login on its own listener under the site's client id (hub.link.evict) throws it off.
    Another site's connection stays."""
    from cryptography import x509

    from hub.link import evict
    from hub.provision.pki import make_crl

    cert, key = shipped.pki.client("site-a")
    site_a = clients(lambda: stays(shipped.site(None, cert_file=cert, key_file=key)))
    site_b = clients(lambda: stays(shipped.site("site-b")))
    site_b.subscribe(cache("site-b"))
    hub = clients(shipped.hub)
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    (shipped.pki.dir / "crl.pem").write_bytes(make_crl(shipped.pki.ca, [(serial, 0.0)]))
    assert shipped.broker.proc is not None
    shipped.broker.proc.send_signal(1)  # SIGHUP: what `systemctl reload mosquitto` sends
    wait_for(lambda: "Reloading config" in shipped.broker.log_path.read_text(errors="replace"), 5, what="the reload")
    with pytest.raises((ConnectRefused, TimeoutError, OSError)):
        TestClient(shipped.broker.host, shipped.broker.tls_port, ca_file=shipped.pki.ca_file, cert_file=cert,
                   key_file=key, timeout=3).close()
    assert site_a.c.is_connected() and site_a.connects == 1  # a reload leaves open TLS sessions alone
    password = tmp_path / "hub.password"
    password.write_text(shipped.hub_password + "\n")
    password.chmod(0o600)
    assert evict(MqttSection(host=shipped.broker.host, port=shipped.broker.port, username="hub",
                             password_file=str(password)), "site-a")
    wait_for(lambda: not site_a.c.is_connected(), 5, what="site-a thrown off")
    still_there(site_b, lambda: hub.publish(cache("site-b"), b"marker"), "site-b")
