"""The join and renewal endpoints' per-address limit (hub/fleetweb.py): as a flood of
addresses, it neither lets one address past its budget nor grows without bound."""

from __future__ import annotations

from hub.fleetweb import _Rate


def test_an_address_gets_its_budget_per_minute_and_quiet_addresses_are_forgotten() -> None:
    rate = _Rate(3)
    assert [rate.allow("10.0.0.1", t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert rate.allow("10.0.0.1", 60.5)  # the first try has left the minute
    for i in range(10_001):  # a flood from as many addresses
        assert rate.allow(f"192.0.2.{i}", 100.0)
    assert rate.allow("198.51.100.7", 161.0)
    assert len(rate._seen) <= 2  # the flood's addresses, quiet for a minute, are gone
