"""Every refusal code of PROTOCOL.md §3, provoked over a real Mosquitto at a running agent;
the cache is unchanged after each refusal."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from wire import envelope
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry, read_cache


@pytest.fixture
def site(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey) -> SiteFiles:
    return write_site(tmp_path / "minheim", "minheim", broker, hub_key, policy={"max_envelope_bytes": 64 * 1024})


@pytest.fixture
def rig(site: SiteFiles, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any
        ) -> Iterator[tuple[HubSide, Agent]]:
    hub = HubSide(broker, hub_key, site.site)
    try:
        with agent_in_thread(site) as agent:
            hub.wait_online()
            # A first cache: version 1 with two entries.
            hub.send(Kind.CACHE, hub.body_full([
                entry(site.cred_key, "em4100:0A00B1C2D3", ["eingang"]),
                entry(site.cred_key, "em4100:0A00B1C2D4", ["eingang"], ref=None, who="caretaker"),
            ]))
            ack = hub.cache_ack()
            assert (ack.version, ack.ok, ack.error) == (1, True, None)
            yield hub, agent
    finally:
        hub.close()


def refused(hub: HubSide, site: SiteFiles, code: str) -> None:
    ack = hub.cache_ack()
    assert (ack.ok, ack.error) == (False, code)
    assert read_cache(site) == (1, 2)  # unchanged
    hub.wait_event(lambda e: e.type == "cache.rejected" and e.error == code)  # type: ignore[attr-defined]


def test_cache_signed_by_an_unknown_key_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    hub.send(Kind.CACHE, hub.body_full([], version=9), key=Ed25519PrivateKey.generate())
    refused(hub, site, "unknown_key")


def test_cache_with_a_forged_signature_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    good = msgspec.json.decode(envelope.sign(hub.body_full([], version=9), hub.key))
    evil = msgspec.json.decode(envelope.sign(hub.body_full([], version=10), Ed25519PrivateKey.generate()))
    good["body"] = evil["body"]  # someone else's body under the hub's key id and signature
    hub.send(Kind.CACHE, b"", raw=msgspec.json.encode(good))
    refused(hub, site, "bad_signature")


def test_cache_for_another_site_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    hub.send(Kind.CACHE, hub.body_full([], version=9, site="wittlich"))
    refused(hub, site, "wrong_site")


def test_an_old_or_equal_version_is_refused_as_stale(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    hub.send(Kind.CACHE, hub.body_full([], version=1))
    refused(hub, site, "stale_version")
    hub.send(Kind.CACHE_DELTA, hub.body_delta(0, 1, [], []))  # a delta to a version the site is past
    refused(hub, site, "stale_version")


def test_a_delta_on_another_base_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    hub.send(Kind.CACHE_DELTA, hub.body_delta(5, 6, [], ["b1:em4100:0A00B1C2D3"]))
    refused(hub, site, "base_mismatch")


def test_a_signed_but_malformed_body_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    hub.send(Kind.CACHE, b'{"type":"cache.full","site":"minheim","version":"two"}')
    refused(hub, site, "malformed")
    hub.send(Kind.CACHE, hub.body_delta(1, 2, [], []))  # a delta on the full-cache topic
    refused(hub, site, "malformed")
    hub.send(Kind.CACHE, b"", raw=b"this is not an envelope")
    refused(hub, site, "malformed")


def test_an_oversized_envelope_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    big = [entry(site.cred_key, f"em4100:{i:010X}", ["eingang"], ref=f"b{i}") for i in range(2000)]
    env = envelope.sign(hub.body_full(big, version=9), hub.key, compress=False)
    assert len(env) > 64 * 1024
    hub.send(Kind.CACHE, b"", raw=env)
    refused(hub, site, "too_large")
    # A compressed body that inflates past the limit: refused after verification, too.
    bomb = envelope.sign(gzip.compress(b" " * (1024 * 1024)), hub.key, compress=False)
    doc = msgspec.json.decode(bomb)
    doc["enc"] = "json+gzip"
    hub.send(Kind.CACHE, b"", raw=msgspec.json.encode(doc))
    refused(hub, site, "too_large")


def test_a_good_delta_after_refusals_still_applies(rig: Any, site: SiteFiles) -> None:
    hub, _ = rig
    hub.send(Kind.CACHE_DELTA, hub.body_delta(1, 2, [entry(site.cred_key, "pin:4821", ["eingang"], ref="b9")], []))
    ack = hub.cache_ack()
    assert (ack.version, ack.ok) == (2, True)
    assert read_cache(site) == (2, 3)


@pytest.mark.parametrize(("kw", "code"), [
    ({"action": "unlock", "door": "keller"}, "unknown_door"),
    ({"action": "checkout_all", "room": "keller"}, "unknown_room"),
    ({"action": "unlock", "door": "eingang", "expires_in": -5}, "expired"),
])
def test_bad_commands_are_refused(rig: Any, site: SiteFiles, kw: dict[str, Any], code: str) -> None:
    hub, agent = rig
    expires_in = kw.pop("expires_in", 60)
    cmd = hub.command(expires_in=expires_in, **kw)
    hub.send(Kind.COMMAND, cmd)
    ack = hub.command_ack()
    assert (ack.id, ack.ok, ack.error) == (cmd.id, False, code)
    assert agent.doors["eingang"].locked
    assert read_cache(site) == (1, 2)


def test_a_replayed_command_is_refused(rig: Any, site: SiteFiles, mock_pins: Any) -> None:
    hub, _ = rig
    cmd = hub.command("unlock", door="eingang", seconds=1)
    hub.send(Kind.COMMAND, cmd)
    assert hub.command_ack().ok
    hub.wait_event(lambda e: e.type == "access.granted" and e.reason == "command")  # type: ignore[attr-defined]
    hub.send(Kind.COMMAND, cmd)
    ack = hub.command_ack()
    assert (ack.ok, ack.error) == (False, "replayed")
    hub.wait_event(lambda e: e.type == "command.rejected" and e.error == "replayed")  # type: ignore[attr-defined]


def test_a_command_signed_by_another_key_is_refused(rig: Any, site: SiteFiles) -> None:
    hub, agent = rig
    hub.send(Kind.COMMAND, hub.command("unlock", door="eingang"), key=Ed25519PrivateKey.generate())
    ack = hub.command_ack()
    assert (ack.ok, ack.error) == (False, "unknown_key")
    assert agent.doors["eingang"].locked
