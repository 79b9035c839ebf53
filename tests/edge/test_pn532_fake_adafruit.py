"""The PN532 fake (testkit/pn532_fake.py) checked against someone else's reading of the NXP
manual: Adafruit's CircuitPython PN532 driver (``adafruit_pn532.uart.PN532_UART``) talks
to it over a real pty through a plain pyserial port, as it would to a module on a UART.

The driver never sets RFConfiguration MaxRetries, so InListPassiveTarget keeps polling
until a card comes (a real PN532's power-on default): without a card it times out and
returns None. An earlier fake answered NbTg = 0 at once whatever the retry setting,
which made this driver raise; Torwart's reader sets finite retries and so relies on
NbTg = 0 only where the real module gives it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial
from adafruit_pn532.uart import PN532_UART

from testkit.pn532_fake import FakePn532

UID7 = bytes.fromhex("04A1B2C3D4E5F6")
UID4 = bytes.fromhex("DEADBEEF")


@pytest.fixture
def fake() -> Iterator[FakePn532]:
    with FakePn532(firmware=b"\x32\x01\x06\x07") as f:
        yield f


@pytest.fixture
def driver(fake: FakePn532) -> Iterator[PN532_UART]:
    port = serial.Serial(fake.path, 115200, timeout=0.1)
    try:
        yield PN532_UART(port)  # wakes the module, SAMConfiguration, GetFirmwareVersion
    finally:
        port.close()


def test_adafruits_driver_wakes_configures_and_identifies_the_fake(fake: FakePn532, driver: PN532_UART) -> None:
    assert driver.firmware_version == (0x32, 0x01, 0x06, 0x07)
    assert fake.commands[0x14] == 1 and fake.commands[0x02] == 2  # SAMConfiguration; the probe + ours
    assert fake.bad_frames == 0 and fake.nacks_sent == 0


def test_adafruits_driver_reads_the_uid_the_fake_presents_and_none_without_a_card(
        fake: FakePn532, driver: PN532_UART) -> None:
    assert driver.read_passive_target(timeout=0.3) is None
    fake.present(UID7)
    assert bytes(driver.read_passive_target(timeout=1)) == UID7
    fake.present(UID4)
    assert bytes(driver.read_passive_target(timeout=1)) == UID4
    fake.remove()
    assert driver.read_passive_target(timeout=0.3) is None
    assert fake.bad_frames == 0


def test_a_waiting_poll_is_answered_when_a_card_arrives(fake: FakePn532, driver: PN532_UART) -> None:
    assert driver.listen_for_passive_target(timeout=1)  # acknowledged, still polling
    fake.present(UID7)
    assert bytes(driver.get_passive_target(timeout=1)) == UID7


def test_with_finite_retries_a_poll_without_a_card_answers_no_target(fake: FakePn532, driver: PN532_UART) -> None:
    # RFConfiguration MaxRetries (item 5): ATR 2, PSL 1, passive activation 2, as Torwart's reader sets it.
    assert driver.call_function(0x32, params=[0x05, 0x02, 0x01, 0x02]) == b""
    assert bytes(driver.call_function(0x4A, response_length=64, params=[0x01, 0x00], timeout=1)) == b"\x00"
    fake.present(UID4)
    assert bytes(driver.read_passive_target(timeout=1)) == UID4
