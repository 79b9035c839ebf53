"""The agent's link with broker authentication: a password, or a client certificate over
TLS; with wrong credentials it keeps deciding offline."""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.outbox import Outbox
from testkit.broker import Mosquitto, TlsFiles
from testkit.mqttclient import TestClient
from testkit.site import SiteFiles, write_site
from testkit.tcpproxy import TcpProxy
from testkit.util import wait_for
from wire import envelope
from wire import messages as m
from wire.topics import Kind, topic

from .hubside import agent_in_thread


def pending(site: SiteFiles) -> int:
    with Outbox(site.data_dir / "outbox.db", site.site, "test", read_only=True) as ob:
        return ob.pending_count()


def online(client: TestClient) -> bool:
    return any(m.decode(x.payload, m.Status).state == "online" for x in client.drain())


def test_the_agent_logs_in_with_its_password(tmp_path: Path, mock_pins: Any) -> None:
    users = {"hub": secrets.token_urlsafe(12), "minheim": secrets.token_urlsafe(12)}
    with Mosquitto(tmp_path / "broker", users=users) as broker:
        hub = TestClient(broker.host, broker.port, username="hub", password=users["hub"])
        hub.subscribe(topic("minheim", Kind.STATUS))
        site = write_site(tmp_path / "site", "minheim", broker, Ed25519PrivateKey.generate(),
                          password=users["minheim"])
        try:
            with agent_in_thread(site):
                wait_for(lambda: online(hub), 20, what="the site online")
        finally:
            hub.close()


def test_the_agent_logs_in_with_its_client_certificate_over_tls(tmp_path: Path, tls_files: TlsFiles,
                                                               mock_pins: Any) -> None:
    with Mosquitto(tmp_path / "broker", tls=tls_files) as broker:
        hub_cert, hub_key = tls_files.client("hub")
        hub = TestClient(broker.host, broker.port, ca_file=tls_files.ca_file, cert_file=hub_cert, key_file=hub_key)
        hub.subscribe(topic("minheim", Kind.STATUS))
        cert, key = tls_files.client("minheim")
        site = write_site(tmp_path / "site", "minheim", broker, Ed25519PrivateKey.generate(),
                          tls_files=(tls_files.ca_file, cert, key))
        try:
            with agent_in_thread(site):
                wait_for(lambda: online(hub), 20, what="the site online over TLS")
        finally:
            hub.close()


def test_with_a_wrong_password_the_agent_still_decides_offline(tmp_path: Path, mock_pins: Any) -> None:
    users = {"hub": secrets.token_urlsafe(12), "minheim": secrets.token_urlsafe(12)}
    with Mosquitto(tmp_path / "broker", users=users) as broker:
        site = write_site(tmp_path / "site", "minheim", broker, Ed25519PrivateKey.generate(),
                          password="not-the-password")
        with agent_in_thread(site) as agent:
            site.badge("eingang-sim", "em4100:0A00B1C2D3")
            wait_for(lambda: pending(site) >= 3, 20, what="the badge decided offline")
            assert not agent.link.connected


def test_the_agents_session_resumes_when_the_broker_makes_its_login_its_client_id(
    tmp_path: Path, mock_pins: Any
) -> None:
    # The broker replaces the client id the agent sends (torwart-site-minheim) with its
    # login (minheim): always the same, so the session still resumes after a dropped
    # uplink, and a command the hub sent meanwhile (queued in it, not retained) arrives.
    users = {"hub": secrets.token_urlsafe(12), "minheim": secrets.token_urlsafe(12)}
    with Mosquitto(tmp_path / "broker", users=users) as broker, TcpProxy(broker.host, broker.port) as proxy:
        hub = TestClient(broker.host, broker.hub_port, client_id="torwart-hub", username="hub", password=users["hub"])
        key = Ed25519PrivateKey.generate()
        site = write_site(tmp_path / "site", "minheim", proxy, key, password=users["minheim"])
        try:
            hub.subscribe(topic("minheim", Kind.COMMAND_ACK))
            with agent_in_thread(site) as agent:
                wait_for(lambda: getattr(agent, "link", None) is not None and agent.link.connected, 20,
                         what="the site online")
                proxy.cut()
                wait_for(lambda: not agent.link.connected, 20, what="the site to notice the cut")
                now = int(time.time())
                cmd = m.Command(site="minheim", id=uuid.uuid4().hex, issued_at=now, expires_at=now + 120,
                                action="unlock", door="eingang", seconds=1)
                rc = hub.publish(topic("minheim", Kind.COMMAND), envelope.sign(cmd, key))
                assert rc is not None and not rc.is_failure
                proxy.heal()
                ack = m.decode(hub.expect(topic("minheim", Kind.COMMAND_ACK), timeout=30).payload, m.CommandAck)
                assert (ack.id, ack.ok) == (cmd.id, True)
        finally:
            hub.close()
        log = broker.log_path.read_text(errors="replace")
        assert "as minheim (" in log and "as torwart-site-minheim (" not in log
