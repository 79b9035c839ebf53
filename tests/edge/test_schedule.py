"""Office hours: when is a door held open by its schedule."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from edge.config import OfficeHours
from edge.schedule import in_office_hours, parse_days, scheduled_mode

BERLIN = ZoneInfo("Europe/Berlin")


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize(("spec", "days"), [
    ("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("mon,wed-fri", {0, 2, 3, 4}),
    ("fri-mon", {4, 5, 6, 0}), ("Tue", {1}),
])
def test_day_lists(spec: str, days: set[int]) -> None:
    assert parse_days(spec) == days


@pytest.mark.parametrize("spec", ["mon-frx", "", "monday", "mon--fri"])
def test_bad_day_lists_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_days(spec)


WEEKDAYS = [OfficeHours(days="mon-fri", start="08:00", end="18:00")]


@pytest.mark.parametrize(("when", "inside"), [
    (at(2026, 11, 23, 7, 59), False),  # Monday, a minute early
    (at(2026, 11, 23, 8, 0), True),
    (at(2026, 11, 23, 17, 59), True),
    (at(2026, 11, 23, 18, 0), False),  # the end is exclusive
    (at(2026, 11, 28, 10, 0), False),  # Saturday
    (at(2026, 3, 30, 8, 30), True),  # the Monday after the switch to summer time
])
def test_a_weekday_window_in_local_time(when: float, inside: bool) -> None:
    assert in_office_hours(WEEKDAYS, when, "Europe/Berlin") is inside


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    night = [OfficeHours(days="fri", start="22:00", end="02:00")]
    assert in_office_hours(night, at(2026, 11, 27, 23, 0), "Europe/Berlin")  # Friday night
    assert in_office_hours(night, at(2026, 11, 28, 1, 30), "Europe/Berlin")  # early Saturday
    assert not in_office_hours(night, at(2026, 11, 29, 1, 30), "Europe/Berlin")  # early Sunday
    assert not in_office_hours(night, at(2026, 11, 27, 1, 30), "Europe/Berlin")  # early Friday


def test_the_same_instant_differs_by_time_zone() -> None:
    t = dt.datetime(2026, 11, 23, 7, 30, tzinfo=dt.UTC).timestamp()  # 08:30 in Berlin
    assert in_office_hours(WEEKDAYS, t, "Europe/Berlin")
    assert not in_office_hours(WEEKDAYS, t, "UTC")


@pytest.mark.parametrize(("when", "trusted", "mode"), [
    (at(2026, 11, 23, 10, 0), True, "office_hours"),
    (at(2026, 11, 23, 10, 0), False, "normal"),  # an untrusted clock never opens a door
    (at(2026, 11, 23, 20, 0), True, "normal"),
    (at(2026, 11, 23, 20, 0), False, "normal"),
])
def test_office_hours_follow_only_a_trusted_clock(when: float, trusted: bool, mode: str) -> None:
    assert scheduled_mode(WEEKDAYS, when, "Europe/Berlin", clock_trusted=trusted) == mode
