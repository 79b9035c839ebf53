"""Commands leave the hub with an MQTT 5 message expiry at their own ``expires_at``, so a
broker holding an offline site's persistent session drops a command (a remote unlock)
once it is too late, instead of delivering it when the site comes back."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub import commands
from hub.config import MqttSection
from hub.link import HubLink
from testkit.broker import Mosquitto
from testkit.mqttclient import TestClient
from testkit.util import wait_for
from wire import envelope
from wire import messages as m
from wire.topics import Kind, topic


@pytest.fixture
def link(broker: Mosquitto) -> HubLink:
    hub = HubLink(MqttSection(host=broker.host, port=broker.port), None, persistent=False)
    hub.start()
    assert hub.wait_connected(10)
    yield hub  # type: ignore[misc]
    hub.stop()


def test_an_unlock_is_for_now_and_other_commands_keep_two_minutes() -> None:
    unlock = commands.build("minheim", "unlock", door="eingang", now=1_000)
    lockdown = commands.build("minheim", "lockdown", now=1_000)
    assert unlock.expires_at - unlock.issued_at == commands.UNLOCK_TTL == 30
    assert lockdown.expires_at - lockdown.issued_at == commands.COMMAND_TTL == 120


def test_a_command_carries_a_message_expiry_at_its_own_expiry(broker: Mosquitto, link: HubLink) -> None:
    key = Ed25519PrivateKey.generate()
    site = TestClient(broker.host, broker.port)
    try:
        site.subscribe(topic("minheim", Kind.COMMAND))
        cmd = commands.build("minheim", "unlock", door="eingang")
        assert link.publish_command("minheim", cmd, envelope.sign(cmd, key))
        got = site.expect(topic("minheim", Kind.COMMAND))
        assert m.decode(envelope.open_envelope(got.payload, envelope.trusted_keys(key.public_key())),
                        m.Command).id == cmd.id
        assert got.expiry is not None
        assert 0 < got.expiry <= cmd.expires_at - time.time() + 1
    finally:
        site.close()


def test_an_expired_command_is_not_published(broker: Mosquitto, link: HubLink) -> None:
    key = Ed25519PrivateKey.generate()
    site = TestClient(broker.host, broker.port)
    try:
        site.subscribe(topic("minheim", Kind.COMMAND))
        stale = commands.build("minheim", "unlock", door="eingang", now=time.time() - 60)
        assert not link.publish_command("minheim", stale, envelope.sign(stale, key))
        fresh = commands.build("minheim", "checkout_all")
        assert link.publish_command("minheim", fresh, envelope.sign(fresh, key))
        # Delivery is in order: the first command to arrive is the fresh one.
        first = wait_for(lambda: site.messages.get(timeout=10), 15, what="a command")
        opened = m.decode(envelope.open_envelope(first.payload, envelope.trusted_keys(key.public_key())), m.Command)
        assert opened.id == fresh.id
    finally:
        site.close()
