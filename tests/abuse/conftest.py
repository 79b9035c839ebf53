"""The abuse tests' shared rig: a county of two sites (``_hubrig``: A plays the compromised
site, B the honest one) with the real hub service. test_fuzz_ingest has a ``rig`` of its
own (the ingest alone, without a broker)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto
from testkit.county import make_county

from ._hubrig import A, B, Rig, make_rig


@pytest.fixture
def rig(tmp_path: Path, auth_broker: Mosquitto, booking_platform: BookingPlatform,
        site_passwords: dict[str, str]) -> Iterator[Rig]:
    county = make_county(tmp_path, auth_broker, booking_platform, (A, B), mqtt_users=site_passwords)
    with contextlib.ExitStack() as stack:
        yield make_rig(county, booking_platform, site_passwords, auth_broker, stack)
