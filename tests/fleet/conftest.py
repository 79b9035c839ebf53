"""Every broker a fleet test started is stopped when the test ends, passed or failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import _fleet


@pytest.fixture(autouse=True)
def _stop_fleet_brokers() -> Iterator[None]:
    yield
    while _fleet.STARTED:
        _fleet.STARTED.pop().stop()
