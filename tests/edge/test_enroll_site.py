"""The site's side of enrollment (PROTOCOL.md §3 ``enroll``): the next card at the named
reader opens no door and travels to the hub sealed; expired, replayed and impossible
enroll commands are refused. Real agent on a thread, real Mosquitto, mock pins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from testkit.broker import Mosquitto
from testkit.site import SiteFiles, write_site
from wire import envelope
from wire import messages as m
from wire.errors import WireError
from wire.keys import public_key_b64
from wire.seal import unseal
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry, last_seq

CARD = "em4100:0A00B1C2D3"
NEW_CARD = "iso14443a:04A1B2C3D4E5F6"
LOCK_EINGANG = 17


@pytest.fixture
def enroll_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto, enroll_key: X25519PrivateKey, mock_pins: Any
        ) -> Iterator[tuple[SiteFiles, HubSide]]:
    hub_key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key, enroll_public_key=public_key_b64(enroll_key))
    hub = HubSide(broker, hub_key, "minheim")
    try:
        with agent_in_thread(site):
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, CARD, ["eingang"], ref=None, who="m-anna")]))
            assert hub.cache_ack().ok
            yield site, hub
    finally:
        hub.close()


def test_the_enrollment_read_opens_no_door_and_reaches_the_hub_sealed(
    rig: tuple[SiteFiles, HubSide], enroll_key: X25519PrivateKey, mock_pins: Any
) -> None:
    site, hub = rig
    cmd = hub.command("enroll", reader="eingang-sim", seconds=60)
    hub.send(Kind.COMMAND, cmd)
    assert hub.command_ack().ok
    n = last_seq(hub)
    site.badge("eingang-sim", CARD)  # a card that would open this door: enrolling, it must not
    read = hub.wait_event(lambda e: isinstance(e, m.EnrollRead) and e.seq > n)
    assert isinstance(read, m.EnrollRead) and (read.reader, read.command) == ("eingang-sim", cmd.id)
    assert unseal(read.sealed, enroll_key, "minheim") == CARD
    with pytest.raises(WireError):
        unseal(read.sealed, enroll_key, "altdorf")  # bound to the site it was read at
    assert CARD not in read.sealed and "0A00B1C2D3" not in m.encode(read).decode()
    assert not any(isinstance(e, m.AccessGranted | m.AccessDenied) and e.seq > n for e in hub.events)
    assert mock_pins.pin(LOCK_EINGANG).state == 0
    # Once read, the reader is back to normal: the same card opens the door again.
    site.badge("eingang-sim", CARD)
    ev = hub.wait_event(lambda e: isinstance(e, m.AccessGranted) and e.seq > read.seq)
    assert ev.who == "m-anna"  # type: ignore[attr-defined]
    assert sum(isinstance(e, m.EnrollRead) for e in hub.events) == 1


def test_an_expired_enroll_command_is_refused_and_the_reader_stays_normal(rig: tuple[SiteFiles, HubSide]) -> None:
    site, hub = rig
    hub.send(Kind.COMMAND, hub.command("enroll", reader="eingang-sim", seconds=60, expires_in=-5))
    ack = hub.command_ack()
    assert (ack.ok, ack.error) == (False, "expired")
    n = last_seq(hub)
    site.badge("eingang-sim", NEW_CARD)
    ev = hub.wait_event(lambda e: e.type.startswith("access.") and e.seq > n)
    assert ev.reason == "unknown_credential"  # type: ignore[attr-defined]
    assert not any(isinstance(e, m.EnrollRead) for e in hub.events)


def test_a_replayed_enroll_command_is_refused(rig: tuple[SiteFiles, HubSide]) -> None:
    site, hub = rig
    signed = envelope.sign(hub.command("enroll", reader="eingang-sim", seconds=60), hub.key)
    hub.send(Kind.COMMAND, b"", raw=signed)
    assert hub.command_ack().ok
    site.badge("eingang-sim", NEW_CARD)
    hub.wait_event(lambda e: isinstance(e, m.EnrollRead))
    hub.send(Kind.COMMAND, b"", raw=signed)  # recorded off the wire and sent again
    ack = hub.command_ack()
    assert (ack.ok, ack.error) == (False, "replayed")
    n = last_seq(hub)
    site.badge("eingang-sim", NEW_CARD)
    ev = hub.wait_event(lambda e: e.type.startswith("access.") and e.seq > n)
    assert ev.reason == "unknown_credential"  # type: ignore[attr-defined]
    assert sum(isinstance(e, m.EnrollRead) for e in hub.events) == 1


def test_enroll_at_a_reader_the_site_does_not_have_is_refused(rig: tuple[SiteFiles, HubSide]) -> None:
    _, hub = rig
    hub.send(Kind.COMMAND, hub.command("enroll", reader="keller-sim", seconds=60))
    assert hub.command_ack().error == "malformed"


def test_a_site_without_the_hubs_enrollment_key_refuses_enroll(tmp_path: Path, broker: Mosquitto,
                                                               mock_pins: Any) -> None:
    hub_key = Ed25519PrivateKey.generate()
    bare = write_site(tmp_path / "altdorf", "altdorf", broker, hub_key)  # no [hub] enroll_public_key
    hub = HubSide(broker, hub_key, "altdorf")
    try:
        with agent_in_thread(bare):
            hub.wait_online()
            hub.send(Kind.COMMAND, hub.command("enroll", reader="eingang-sim", seconds=60))
            assert hub.command_ack().error == "malformed"
    finally:
        hub.close()
