"""Doors on gpiozero mock pins: safe state from the start, unlock/relock, contact alarms,
exit button, modes."""

from __future__ import annotations

import queue
from typing import Any

import msgspec
import pytest

from edge.config import DoorSection, OfficeHours
from edge.door import Door
from testkit.util import wait_for

LOCK, CONTACT, EXIT, BUZZER, LED = 17, 27, 22, 23, 24


class Sink:
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
        self.states = 0
        self.exits = 0

    def door_event(self, door_id: str, type_: str, fields: dict[str, object]) -> None:
        self.events.put((type_, fields))

    def door_state_changed(self, door_id: str) -> None:
        self.states += 1

    def exit_pressed(self, door_id: str) -> None:
        self.exits += 1

    def next(self, timeout: float = 5) -> tuple[str, dict[str, object]]:
        return self.events.get(timeout=timeout)

    def none(self) -> bool:
        return self.events.empty()


def door_cfg(**kw: Any) -> DoorSection:
    base: dict[str, Any] = {"id": "front", "lock_pin": LOCK, "contact_pin": CONTACT, "exit_pin": EXIT,
                            "buzzer_pin": BUZZER, "led_pin": LED, "unlock_seconds": 0.5,
                            "held_open_seconds": 0.3}
    base.update(kw)
    return msgspec.convert(base, DoorSection)


@pytest.fixture
def sink() -> Sink:
    return Sink()


def close_door(pins: Any) -> None:
    pins.pin(CONTACT).drive_low()  # reed switch to ground: shut


def open_door(pins: Any) -> None:
    pins.pin(CONTACT).drive_high()


def shut_door(pins: Any, sink: Sink, **kw: Any) -> Door:
    """A door whose contact reads shut. (A mock pin's pull-up resets it when the device is
    created, so the contact is driven after construction; the resulting close is drained.)"""
    d = Door(door_cfg(**kw), sink)
    close_door(pins)
    assert sink.next() == ("door.closed", {})
    return d


@pytest.mark.parametrize(("fail", "active_high", "locked_level"), [
    ("secure", True, 0), ("secure", False, 1), ("safe", True, 1), ("safe", False, 0),
])
def test_relay_rests_locked_from_the_start_for_every_wiring(
    mock_pins: Any, sink: Sink, fail: str, active_high: bool, locked_level: int
) -> None:
    d = shut_door(mock_pins, sink, fail=fail, lock_active_high=active_high)
    try:
        assert mock_pins.pin(LOCK).state == locked_level
        assert d.locked
        d.unlock(5)
        assert mock_pins.pin(LOCK).state == 1 - locked_level
        assert not d.locked
    finally:
        d.close()
    assert mock_pins.pin(LOCK).state == locked_level  # closing relocks before releasing the pin


def test_unlock_relocks_after_unlock_seconds(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink)
    try:
        d.unlock()
        assert not d.locked and mock_pins.pin(LED).state == 1
        wait_for(lambda: d.locked, timeout=5, what="relock")
        assert mock_pins.pin(LOCK).state == 0 and mock_pins.pin(LED).state == 0
        assert sink.none()  # nobody opened it: no door events
    finally:
        d.close()


def test_granted_opening_is_not_forced_and_closing_is_reported(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink, held_open_seconds=30)
    try:
        d.unlock()
        open_door(mock_pins)
        assert sink.next() == ("door.opened", {})
        close_door(mock_pins)
        assert sink.next() == ("door.closed", {})
        assert sink.none()
        assert d.snapshot().alarm is None
    finally:
        d.close()


def test_opening_a_locked_door_without_a_grant_is_forced_open(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink, held_open_seconds=30)
    try:
        open_door(mock_pins)
        assert sink.next() == ("door.opened", {})
        assert sink.next() == ("door.forced_open", {})
        snap = d.snapshot()
        assert (snap.open, snap.locked, snap.alarm) == (True, True, "forced_open")
        close_door(mock_pins)
        assert sink.next() == ("door.closed", {})
        assert d.snapshot().alarm is None
    finally:
        d.close()


def test_a_door_left_open_raises_held_open(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink, held_open_seconds=0.3, unlock_seconds=0.5)
    try:
        d.unlock()
        open_door(mock_pins)
        assert sink.next() == ("door.opened", {})
        type_, fields = sink.next()
        assert type_ == "door.held_open"
        assert float(fields["seconds"]) >= 0.3  # type: ignore[arg-type]
        assert d.snapshot().alarm == "held_open"
        close_door(mock_pins)
        assert sink.next() == ("door.closed", {})
        assert d.snapshot().alarm is None
    finally:
        d.close()


def test_contact_bounce_reports_one_change(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink, held_open_seconds=30)
    try:
        d.unlock()
        open_door(mock_pins)
        open_door(mock_pins)
        assert sink.next() == ("door.opened", {})
        assert sink.none()
    finally:
        d.close()


def test_exit_button_is_reported_to_the_agent(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink)
    try:
        mock_pins.pin(EXIT).drive_low()
        wait_for(lambda: sink.exits == 1, timeout=5, what="exit press")
    finally:
        d.close()


def test_lockdown_ends_a_running_unlock_and_office_hours_hold_the_door_open(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink, unlock_seconds=60, office_hours=[OfficeHours(start="08:00", end="18:00")])
    try:
        d.unlock()
        assert not d.locked
        d.set_mode("lockdown")
        assert d.locked and d.snapshot().mode == "lockdown"
        d.set_mode("office_hours")
        assert not d.locked
        open_door(mock_pins)
        assert sink.next() == ("door.opened", {})
        assert sink.none()  # not forced, and no held-open alarm during office hours
        d.set_mode("normal")
        assert d.locked
    finally:
        d.close()


def test_in_lockdown_only_the_exit_button_unlocks_and_nothing_else_revives_later(mock_pins: Any, sink: Sink) -> None:
    d = shut_door(mock_pins, sink, unlock_seconds=60)
    try:
        assert d.unlock(by="command")
        assert not d.locked
        d.set_mode("lockdown")  # a running command unlock ends at once
        assert d.locked and mock_pins.pin(LOCK).state == 0
        assert not d.unlock(600, by="command")
        assert not d.unlock(by="badge")
        assert d.locked
        d.set_mode("normal")  # the refused unlocks left nothing behind to open the door now
        assert d.locked
        d.set_mode("lockdown")
        assert d.unlock(by="exit_button")  # egress is never blocked
        assert not d.locked
        d.set_mode("normal")
        d.set_mode("lockdown")  # a lockdown arriving during the exit button's unlock keeps it
        assert not d.locked
    finally:
        d.close()


def test_a_door_without_contact_reports_open_as_unknown(mock_pins: Any, sink: Sink) -> None:
    d = Door(door_cfg(contact_pin=None, exit_pin=None, buzzer_pin=None, led_pin=None), sink)
    try:
        assert d.snapshot().open is None
        d.deny_feedback()
    finally:
        d.close()
