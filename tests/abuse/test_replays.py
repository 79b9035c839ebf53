"""Replays and downgrades at a running agent (real Mosquitto, the agent on a thread), the
cases tests/edge/test_agent_refusals.py leaves out: an old, validly signed cache replayed
after newer ones (a downgrade), a delta replayed after it was applied, a command replayed
after the agent restarted, and commands for another site, too large or tampered with.
Each is refused with its PROTOCOL.md code and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from tests.edge.hubside import HubSide, agent_in_thread, entry, read_cache
from wire import envelope
from wire import messages as m
from wire.topics import Kind

CARD = "em4100:0A00B1C2D3"
OTHER = "em4100:0A00B1C2D4"


@pytest.fixture
def site(tmp_path: Path, broker: Mosquitto, hub_key: Ed25519PrivateKey) -> SiteFiles:
    return write_site(tmp_path / "minheim", "minheim", broker, hub_key, policy={"max_envelope_bytes": 4096})


def ack_of(hub: HubSide) -> tuple[int | None, bool, str | None]:
    a = hub.cache_ack()
    return a.version, a.ok, a.error


def test_an_old_signed_cache_replayed_later_is_refused_as_stale(site: SiteFiles, broker: Mosquitto,
                                                                 hub_key: Ed25519PrivateKey, mock_pins: Any) -> None:
    hub = HubSide(broker, hub_key, site.site)
    try:
        with agent_in_thread(site):
            hub.wait_online()
            # Version 1 let a card in; version 2 took it away (the booking was cancelled).
            v1 = envelope.sign(hub.body_full([entry(site.cred_key, CARD, ["eingang"])], version=1), hub_key)
            v2 = envelope.sign(hub.body_full([entry(site.cred_key, OTHER, ["eingang"])], version=2), hub_key)
            hub.send(Kind.CACHE, b"", raw=v1)
            assert ack_of(hub) == (1, True, None)
            hub.send(Kind.CACHE, b"", raw=v2)
            assert ack_of(hub) == (2, True, None)
            hub.send(Kind.CACHE, b"", raw=v1)  # the downgrade: validly signed, but old
            assert ack_of(hub) == (1, False, "stale_version")
            assert read_cache(site) == (2, 1)
            n = max(e.seq for e in hub.events)
            site.badge("eingang-sim", CARD)
            ev = hub.wait_event(lambda e: e.seq > n and e.type.startswith("access."))
            assert (ev.type, ev.reason) == ("access.denied", "unknown_credential")  # type: ignore[attr-defined]

            # A delta replayed after it was applied is stale too, and so is its base.
            d3 = envelope.sign(hub.body_delta(2, 3, [entry(site.cred_key, "pin:48210000", ["eingang"])], []),
                               hub_key)
            hub.send(Kind.CACHE_DELTA, b"", raw=d3)
            assert ack_of(hub) == (3, True, None)
            hub.send(Kind.CACHE_DELTA, b"", raw=d3)
            assert ack_of(hub) == (3, False, "stale_version")
            assert read_cache(site) == (3, 2)
    finally:
        hub.close()


def test_a_command_replayed_after_a_restart_is_refused(site: SiteFiles, broker: Mosquitto,
                                                        hub_key: Ed25519PrivateKey, mock_pins: Any) -> None:
    hub = HubSide(broker, hub_key, site.site)
    try:
        cmd = hub.command("unlock", door="eingang", seconds=1, expires_in=3600)
        raw = envelope.sign(cmd, hub_key)
        with agent_in_thread(site):
            boot = hub.wait_online().boot
            hub.send(Kind.COMMAND, b"", raw=raw)
            assert hub.command_ack().ok
        # A new process, the same site: the executed command id was kept on disk.
        with agent_in_thread(site) as agent:
            hub.wait_online(not_boot=boot)
            hub.send(Kind.COMMAND, b"", raw=raw)
            ack = hub.command_ack()
            assert (ack.id, ack.ok, ack.error) == (cmd.id, False, "replayed")
            assert agent.doors["eingang"].locked
            granted = [e for e in hub.events if e.type == "access.granted"]
            assert len(granted) == 1  # the first execution only
    finally:
        hub.close()


@pytest.mark.parametrize("case", ["wrong_site", "too_large", "bad_signature"])
def test_a_command_for_another_site_too_large_or_tampered_is_refused(
    site: SiteFiles, broker: Mosquitto, hub_key: Ed25519PrivateKey, mock_pins: Any, case: str
) -> None:
    hub = HubSide(broker, hub_key, site.site)
    try:
        with agent_in_thread(site) as agent:
            hub.wait_online()
            if case == "wrong_site":
                raw = envelope.sign(m.Command(site="wittlich", id="c-w", issued_at=hub.command("unlock",
                                    door="eingang").issued_at, expires_at=2**31, action="unlock", door="eingang"),
                                    hub_key)
            elif case == "too_large":
                cmd = hub.command("unlock", door="eingang", id="c-" + "x" * 200)
                doc = json.loads(m.encode(cmd))
                doc["padding"] = "x" * 8000  # unknown fields are allowed, but not past the size limit
                raw = envelope.sign(json.dumps(doc).encode(), hub_key, compress=False)
            else:
                good = json.loads(envelope.sign(hub.command("unlock", door="eingang", id="c-good"), hub_key))
                evil = json.loads(envelope.sign(hub.command("unlock", door="eingang", id="c-evil"),
                                                Ed25519PrivateKey.generate()))
                good["body"] = evil["body"]
                raw = json.dumps(good).encode()
            hub.send(Kind.COMMAND, b"", raw=raw)
            ack = hub.command_ack()
            assert (ack.ok, ack.error) == (False, case)
            assert agent.doors["eingang"].locked
            hub.wait_event(lambda e: e.type == "command.rejected" and e.error == case)  # type: ignore[attr-defined]
    finally:
        hub.close()
