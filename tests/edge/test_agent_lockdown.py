"""Lockdown at a running site over a real Mosquitto: a remote unlock is refused (``lockdown``),
a running one ends at once, and only the exit button opens a door until an admin ends it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from testkit.broker import Mosquitto
from testkit.site import write_site
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread

LOCK_EINGANG, EXIT_EINGANG = 17, 22


def test_a_remote_unlock_is_refused_in_lockdown_and_only_the_exit_button_opens(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    key = Ed25519PrivateKey.generate()
    site = write_site(tmp_path / "minheim", "minheim", broker, key)
    hub = HubSide(broker, key, site.site)
    lock = mock_pins.pin(LOCK_EINGANG)
    try:
        with agent_in_thread(site) as agent:
            hub.wait_online()
            door = agent.doors["eingang"]
            # A long remote unlock is running when the lockdown arrives: the door relocks at once.
            hub.send(Kind.COMMAND, hub.command("unlock", door="eingang", seconds=600))
            assert hub.command_ack().ok
            assert lock.state == 1
            hub.send(Kind.COMMAND, hub.command("lockdown"))
            assert hub.command_ack().ok  # acked after the relay was driven
            assert lock.state == 0 and door.locked and door.mode == "lockdown"

            # A caretaker's remote unlock in lockdown: refused with its own code, door stays locked.
            refused = hub.command("unlock", door="eingang", seconds=600)
            hub.send(Kind.COMMAND, refused)
            ack = hub.command_ack()
            assert (ack.id, ack.ok, ack.error) == (refused.id, False, "lockdown")
            ev = hub.wait_event(lambda e: isinstance(e, m.CommandRejected) and e.command == refused.id)
            assert (ev.action, ev.error) == ("unlock", "lockdown")  # type: ignore[attr-defined]
            assert lock.state == 0 and door.locked

            # The exit button still opens (egress), and relocks after its unlock time.
            n = ev.seq
            mock_pins.pin(EXIT_EINGANG).drive_low()
            granted = hub.wait_event(lambda e: e.seq > n and isinstance(e, m.AccessGranted))
            assert granted.reason == "exit_button"  # type: ignore[attr-defined]
            assert lock.state == 1
            mock_pins.pin(EXIT_EINGANG).drive_high()
            wait_for(lambda: lock.state == 0, 10, what="relock after the exit button")

            # Ending the lockdown is an admin's act; neither the first unlock nor the refused one
            # comes back with it, not even when the refused one is sent again.
            hub.send(Kind.COMMAND, hub.command("lockdown_end"))
            assert hub.command_ack().ok
            assert door.mode == "normal" and lock.state == 0 and door.locked
            hub.send(Kind.COMMAND, refused)
            assert hub.command_ack().error == "replayed"
            assert lock.state == 0 and door.locked
            hub.wait_event(lambda e: isinstance(e, m.CommandRejected) and e.error == "replayed")
            by_command = [e for e in hub.events if isinstance(e, m.AccessGranted) and e.reason == "command"]
            assert len(by_command) == 1  # the unlock before the lockdown, nothing since
    finally:
        hub.close()
