"""One door: lock relay, door contact, exit button, buzzer and LED, through gpiozero.

The relay is created in its locked state, so a door is locked from the first instant the
process drives the pin. Which relay state means "locked" follows the door's fail mode:

- ``fail = "secure"`` (default): the lock opens only while powered; relay active = unlocked.
  If the Pi dies, the relay drops and the door stays locked.
- ``fail = "safe"`` (fire rules, e.g. a mag-lock on an escape route): the lock holds only
  while powered; relay active = locked. If the Pi dies, the relay drops and the door opens.

gpiozero callbacks arrive on gpiozero's threads and the relock/held-open timers on timer
threads; the door keeps its own state under a lock and reports through a ``DoorSink``,
which hands everything to the agent's queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gpiozero import Button, Buzzer, DigitalInputDevice, OutputDevice

from .config import DoorSection

log = logging.getLogger(__name__)

Mode = Literal["normal", "office_hours", "lockdown"]
Alarm = Literal["held_open", "forced_open"]
#: Who asked for an unlock. In lockdown only the exit button's unlock counts (egress).
UnlockBy = Literal["badge", "exit_button", "command"]

#: After a relock the door may still be swinging shut; opening within this is not "forced".
RELOCK_GRACE_S = 1.5


class DoorSink(Protocol):
    """Receives what a door observes. Called on gpiozero or timer threads: hand over and return."""

    def door_event(self, door_id: str, type_: str, fields: dict[str, object]) -> None: ...

    def door_state_changed(self, door_id: str) -> None: ...

    def exit_pressed(self, door_id: str) -> None: ...


@dataclass(frozen=True)
class DoorSnapshot:
    door: str
    locked: bool
    open: bool | None
    alarm: Alarm | None
    mode: Mode


class Door:
    """A door under the agent's control. Thread-safe."""

    def __init__(self, cfg: DoorSection, sink: DoorSink, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self._sink = sink
        self._clock = clock
        self._lock = threading.RLock()
        self._relay_active_unlocks = cfg.fail == "secure"
        # Locked from the first instant: initial_value is applied when gpiozero claims the pin.
        self._relay = OutputDevice(cfg.lock_pin, active_high=cfg.lock_active_high,
                                   initial_value=self._relay_value(locked=True))
        self._mode: Mode = "normal"
        self._unlocked_until = 0.0  # monotonic time the running unlock (any source) ends
        self._exit_until = 0.0  # monotonic time the exit button's unlock ends (the one lockdown keeps)
        self._authorised_until = 0.0  # opening before this is not forced (grant, exit, relock grace)
        # One timing thread per door handles relock and held-open deadlines: no thread is
        # started on the unlock path (a thread start costs a GIL hand-off, up to 5 ms).
        self._wake = threading.Condition(self._lock)
        self._held_due: float | None = None
        self._relock_due: float | None = None
        self._opened_at: float | None = None
        self._alarm: Alarm | None = None
        self._closed = False
        self._contact: DigitalInputDevice | None = None
        self._exit: Button | None = None
        self._buzzer: Buzzer | None = None
        self._led: OutputDevice | None = None
        try:
            if cfg.contact_pin is not None:
                # pull-up: a reed switch to ground reads active (low) while the door is shut.
                self._contact = DigitalInputDevice(cfg.contact_pin, pull_up=True)
                self._contact.when_activated = self._contact_changed
                self._contact.when_deactivated = self._contact_changed
                if self._is_open():
                    self._opened_at = self._clock()
            if cfg.exit_pin is not None:
                self._exit = Button(cfg.exit_pin, pull_up=True)
                self._exit.when_pressed = self._exit_pressed
            if cfg.buzzer_pin is not None:
                self._buzzer = Buzzer(cfg.buzzer_pin)
            if cfg.led_pin is not None:
                self._led = OutputDevice(cfg.led_pin)
        except Exception:
            self.close()
            raise
        self._timer = threading.Thread(target=self._timing, name=f"door-{self.id}", daemon=True)
        self._timer.start()

    # --- relay -------------------------------------------------------------------------------

    def _relay_value(self, *, locked: bool) -> bool:
        """Relay active (True) or not, for the wanted lock state."""
        return (not locked) if self._relay_active_unlocks else locked

    def _drive(self, *, locked: bool) -> None:
        if locked:
            (self._relay.off if self._relay_active_unlocks else self._relay.on)()
        else:
            (self._relay.on if self._relay_active_unlocks else self._relay.off)()

    @property
    def locked(self) -> bool:
        return bool(self._relay.value) == self._relay_value(locked=True)

    def _wanted_locked(self, now: float) -> bool:
        if self._mode == "lockdown":
            return now >= self._exit_until  # only an exit-button unlock opens in lockdown
        if self._mode == "office_hours":
            return False
        return now >= self._unlocked_until

    def _apply(self) -> None:
        """Drive the relay to what mode and any running unlock say; report a change."""
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            want = self._wanted_locked(now)
            changed = want != self.locked
            if changed:
                self._drive(locked=want)
                if want:
                    self._authorised_until = max(self._authorised_until, now + RELOCK_GRACE_S)
                if self._led is not None:
                    (self._led.off if want else self._led.on)()
        if changed:
            self._sink.door_state_changed(self.id)

    def unlock(self, seconds: float | None = None, *, by: UnlockBy = "badge") -> bool:
        """Unlock for ``seconds`` (default: the door's unlock_seconds), then relock. A second
        unlock while open extends it. Returns whether the unlock was taken.

        In lockdown only the exit button opens (egress is never blocked); any other unlock
        is refused and changes nothing, so it cannot open the door when the lockdown ends
        either."""
        secs = self.cfg.unlock_seconds if seconds is None else seconds
        with self._lock:
            if self._closed:
                return False
            if self._mode == "lockdown" and by != "exit_button":
                log.warning("door %s: %s unlock refused in lockdown", self.id, by)
                return False
            now = self._clock()
            self._unlocked_until = max(self._unlocked_until, now + secs)
            if by == "exit_button":
                self._exit_until = max(self._exit_until, now + secs)
            self._authorised_until = max(self._authorised_until, self._unlocked_until + RELOCK_GRACE_S)
        self._apply()  # the relay first: everything else can wait
        with self._lock:
            self._relock_due = self._unlocked_until
            self._wake.notify()
        if self._buzzer is not None:
            self._buzzer.beep(on_time=0.15, off_time=0.1, n=1, background=True)
        return True

    def _timing(self) -> None:
        """Relock when an unlock runs out; raise held-open when the door stays open too long."""
        while True:
            with self._lock:
                if self._closed:
                    return
                dues = [t for t in (self._relock_due, self._held_due) if t is not None]
                now = self._clock()
                if not dues or min(dues) > now:
                    self._wake.wait(None if not dues else min(dues) - now)
                    continue
                relock = self._relock_due is not None and self._relock_due <= now
                if relock:
                    self._relock_due = None
                held = self._held_due is not None and self._held_due <= now
                if held:
                    self._held_due = None
            if relock:
                self._apply()
            if held:
                self._held_check()

    def deny_feedback(self) -> None:
        """Three short beeps and LED blinks for a refused badge."""
        if self._buzzer is not None:
            self._buzzer.beep(on_time=0.08, off_time=0.08, n=3, background=True)
        if self._led is not None and self.locked:
            self._led.blink(on_time=0.08, off_time=0.08, n=3, background=True)

    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            if mode == self._mode:
                return
            if mode == "lockdown":
                # A running unlock ends now, unless the exit button asked for it.
                self._unlocked_until = self._exit_until
            self._mode = mode
            log.info("door %s: mode %s", self.id, mode)
        self._apply()
        self._sink.door_state_changed(self.id)

    @property
    def mode(self) -> Mode:
        return self._mode

    # --- contact and exit button ---------------------------------------------------------------

    def _is_open(self) -> bool | None:
        if self._contact is None:
            return None
        active = bool(self._contact.is_active)
        return (not active) if self.cfg.contact_closed_low else active

    def _contact_changed(self) -> None:
        events: list[tuple[str, dict[str, object]]] = []
        with self._lock:
            if self._closed:
                return
            is_open = bool(self._is_open())
            now = self._clock()
            was_open = self._opened_at is not None
            if is_open == was_open:
                return  # contact bounce: no change of state
            if is_open:
                self._opened_at = now
                events.append(("door.opened", {}))
                if self.locked and now >= self._authorised_until and self._mode != "office_hours":
                    self._alarm = "forced_open"
                    events.append(("door.forced_open", {}))
                self._held_due = now + self.cfg.held_open_seconds
                self._wake.notify()
            else:
                self._opened_at = None
                self._alarm = None
                self._held_due = None
                events.append(("door.closed", {}))
        for type_, fields in events:
            self._sink.door_event(self.id, type_, fields)
        self._sink.door_state_changed(self.id)

    def _held_check(self) -> None:
        with self._lock:
            if self._closed or self._opened_at is None or self._mode == "office_hours":
                return
            seconds = round(self._clock() - self._opened_at, 1)
            if self._alarm is None:
                self._alarm = "held_open"
        self._sink.door_event(self.id, "door.held_open", {"seconds": seconds})
        self._sink.door_state_changed(self.id)

    def _exit_pressed(self) -> None:
        self._sink.exit_pressed(self.id)

    # --- state ------------------------------------------------------------------------------

    def snapshot(self) -> DoorSnapshot:
        with self._lock:
            return DoorSnapshot(self.id, self.locked, self._is_open(), self._alarm, self._mode)

    def close(self) -> None:
        """Relock and release the pins."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        for dev in (self._exit, self._contact, self._buzzer, self._led):
            if dev is not None:
                dev.close()
        if not self._relay.closed:
            self._drive(locked=True)
            self._relay.close()
