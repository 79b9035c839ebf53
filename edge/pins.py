"""What the Raspberry Pi does to the pins before the agent runs, and which pin factory drives them.

Between power-on and the moment the agent claims the lock pin (seconds to a minute of
boot), a GPIO sits at the SoC's power-on pull. On the BCM2835, BCM2836, BCM2837 and
BCM2711 (Raspberry Pi 1-4, Zero, CM1-4) that is a pull-UP on GPIO0-8 and a pull-DOWN on
GPIO9-27: the "Pull" column of the alternate function table, BCM2835 ARM Peripherals
§6.2 table 6-31 and BCM2711 ARM Peripherals §5.3 ("Alternative Function Assignments").
GPIO2/3 also carry the board's 1.8 kΩ I²C pull-ups. So GPIO0-8 read high at boot.

A fail-secure door unlocks while its relay is active. With ``lock_active_high = true`` a
pin that is high at boot energises the relay: the door stands unlocked for the whole
boot, and after every crash-reboot. ``check_boot_levels`` refuses that combination
(``torwart-edge check``). An active-low relay input (``lock_active_high = false``) reads
the same high level as "off" = locked, and a fail-safe door (relay active = locked) is
locked by it, so both are accepted.
"""

from __future__ import annotations

import re
import warnings

from .config import EdgeConfig, Pin
from .errors import ConfigError

#: GPIOs the BCM2835-BCM2711 pull high from power-on until software changes them.
BOOT_HIGH_GPIOS = frozenset(range(0, 9))
#: 40-pin header (J8) positions of those GPIOs (pinout.xyz, gpiozero's own header table).
_HEADER_TO_GPIO = {27: 0, 28: 1, 3: 2, 5: 3, 7: 4, 29: 5, 31: 6, 26: 7, 24: 8,
                   32: 12, 33: 13, 8: 14, 10: 15, 36: 16, 11: 17, 12: 18, 35: 19, 38: 20, 40: 21,
                   15: 22, 16: 23, 18: 24, 22: 25, 37: 26, 13: 27, 21: 9, 19: 10, 23: 11}
SOURCE = ("BCM2711 ARM Peripherals §5.3 and BCM2835 ARM Peripherals table 6-31, 'Pull' column: "
          "GPIO0-8 pull high at power-on, GPIO9-27 pull low")


def bcm_number(pin: Pin) -> int | None:
    """The BCM GPIO number of a config pin (17, "GPIO17", "BCM17", "BOARD11", "J8:11"),
    or None for a name this table does not know (e.g. wiringPi numbers)."""
    if isinstance(pin, int):
        return pin
    m = re.fullmatch(r"(?:GPIO|BCM)(\d+)|(?:BOARD|J8:)(\d+)", pin.strip().upper())
    if m is None:
        return None
    if m.group(1) is not None:
        return int(m.group(1))
    return _HEADER_TO_GPIO.get(int(m.group(2)))


def check_boot_levels(cfg: EdgeConfig, path: str) -> None:
    """Raise ConfigError (naming ``path`` and ``doors[i].lock_pin``) for the first fail-secure
    door whose active-high relay sits on a pin the Pi pulls high at boot."""
    for i, d in enumerate(cfg.doors):
        gpio = bcm_number(d.lock_pin)
        if d.fail == "secure" and d.lock_active_high and gpio in BOOT_HIGH_GPIOS:
            raise ConfigError(
                path, f"doors[{i}].lock_pin",
                f"GPIO{gpio} is pulled high by the Pi from power-on until the agent starts ({SOURCE}); "
                f"with lock_active_high = true the relay of this fail-secure door is energised and the door "
                f"is UNLOCKED during every boot. Wire the relay to one of GPIO9-27, or use a relay input "
                f"that is active low (lock_active_high = false, so that high means locked)")


FACTORY_NAMES = {"LGPIOFactory": "lgpio", "MockFactory": "mock", "RPiGPIOFactory": "rpigpio",
                 "PiGPIOFactory": "pigpio", "NativeFactory": "native"}


def pin_factory_name() -> str:
    """gpiozero's pin factory, as ``ClassName (short name)``: the one already set (tests,
    GPIOZERO_PIN_FACTORY) or the one gpiozero picks on this machine. Claims no pin."""
    from gpiozero import Device
    from gpiozero.exc import GPIOZeroError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero warns for every factory it falls back from
            Device.ensure_pin_factory()
    except (GPIOZeroError, OSError, ImportError) as exc:
        return f"none ({exc})"
    cls = type(Device.pin_factory).__name__
    return f"{cls} ({FACTORY_NAMES.get(cls, cls)})"
