"""The pure access decision and the per-reader denial limiter."""

from __future__ import annotations

import random
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.decide import Decision, DenialLimiter, Mode, decide, exit_decision
from wire.messages import Entry

NOW = 1_700_000_000
DOOR = "front"


def e(id: str = "x", *, doors: tuple[str, ...] = (DOOR,), from_: int | None = NOW - 60, until: int | None = NOW + 60,
      ref: str | None = "bk-1", room: str | None = "room-1") -> Entry:
    return Entry(id=id, cred="0" * 32, doors=list(doors), from_=from_, until=until, who="m-1", ref=ref, room=room)


def run(entries: list[Entry], **kw: Any) -> Decision:
    args: dict[str, Any] = {"door": DOOR, "now": NOW, "cache_expires_at": NOW + 3600, "clock_trusted": True,
                            "mode": "normal", "rate_limited": False}
    args.update(kw)
    return decide(entries, **args)


BOOKING = e("b")
STANDING = e("s", ref=None, from_=None, until=None)
LATER = e("later", from_=NOW + 10, until=NOW + 100)
EARLIER = e("earlier", from_=NOW - 100, until=NOW - 10)
OTHER_DOOR = e("od", doors=("back",))
STANDING_OTHER_DOOR = e("sod", doors=("back",), ref=None, from_=None, until=None)
STANDING_EXPIRED = e("sx", ref=None, from_=None, until=NOW - 1)
EXPIRED_CACHE = {"cache_expires_at": NOW}
UNTRUSTED = {"clock_trusted": False}

CASES: list[tuple[str, list[Entry], dict[str, Any], bool, str, str | None]] = [
    # name, entries, overrides, granted, reason, granting entry id
    ("booking in window", [BOOKING], {}, True, "booking", "b"),
    ("standing grant", [STANDING], {}, True, "standing", "s"),
    ("office hours decides like normal", [BOOKING], {"mode": "office_hours"}, True, "booking", "b"),
    ("unknown credential", [], {}, False, "unknown_credential", None),
    ("booking not started", [LATER], {}, False, "outside_window", None),
    ("booking over", [EARLIER], {}, False, "outside_window", None),
    ("until is exclusive", [e(until=NOW)], {}, False, "outside_window", None),
    ("from is inclusive", [e(from_=NOW)], {}, True, "booking", "x"),
    ("unbounded booking", [e(from_=None, until=None)], {}, True, "booking", "x"),
    ("other door only", [OTHER_DOOR], {}, False, "wrong_door", None),
    ("no doors at all", [e(doors=())], {}, False, "wrong_door", None),
    ("cache expired", [BOOKING], EXPIRED_CACHE, False, "cache_expired", None),
    ("cache never expires when None", [BOOKING], {"cache_expires_at": None}, True, "booking", "b"),
    ("clock untrusted", [BOOKING], UNTRUSTED, False, "clock_untrusted", None),
    ("standing with untrusted clock", [STANDING], UNTRUSTED, True, "standing", "s"),
    ("standing with expired cache", [STANDING], EXPIRED_CACHE, True, "standing", "s"),
    ("bounded standing with untrusted clock", [e("sb", ref=None)], UNTRUSTED, False, "clock_untrusted", None),
    ("ended standing with untrusted clock", [STANDING_EXPIRED], UNTRUSTED, False, "clock_untrusted", None),
    ("standing from only, untrusted clock", [e("sf", ref=None, until=None)], UNTRUSTED, False, "clock_untrusted",
     None),
    ("bounded standing with expired cache", [e("sb", ref=None)], EXPIRED_CACHE, True, "standing", "sb"),
    ("standing past its until", [STANDING_EXPIRED], {}, False, "outside_window", None),
    ("standing at another door", [STANDING_OTHER_DOOR], {}, False, "wrong_door", None),
    ("lockdown beats standing", [STANDING], {"mode": "lockdown"}, False, "lockdown", None),
    ("lockdown beats rate limit", [BOOKING], {"mode": "lockdown", "rate_limited": True}, False, "lockdown", None),
    ("rate limit beats a grant", [STANDING], {"rate_limited": True}, False, "rate_limited", None),
    ("rate limit hides unknown", [], {"rate_limited": True}, False, "rate_limited", None),
    # precedence among several entries
    ("standing wins over booking", [BOOKING, STANDING], {}, True, "standing", "s"),
    ("any grant wins over denials", [OTHER_DOOR, EARLIER, BOOKING], {}, True, "booking", "b"),
    ("expired cache over untrusted clock", [BOOKING], {**EXPIRED_CACHE, **UNTRUSTED}, False, "cache_expired", None),
    ("expired over outside window", [STANDING_EXPIRED, BOOKING], EXPIRED_CACHE, False, "cache_expired", None),
    ("untrusted over outside window", [STANDING_EXPIRED, BOOKING], UNTRUSTED, False, "clock_untrusted", None),
    ("outside window over wrong door", [OTHER_DOOR, LATER], {}, False, "outside_window", None),
    ("expired over wrong door", [OTHER_DOOR, BOOKING], EXPIRED_CACHE, False, "cache_expired", None),
    ("standing grant despite expired booking", [BOOKING, STANDING], EXPIRED_CACHE, True, "standing", "s"),
]


@pytest.mark.parametrize(("entries", "kw", "granted", "reason", "by"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_decision_table(entries: list[Entry], kw: dict[str, Any], granted: bool, reason: str, by: str | None) -> None:
    d = run(entries, **kw)
    assert (d.granted, d.reason) == (granted, reason)
    assert (d.entry.id if d.entry else None) == by


def test_every_reason_of_the_protocol_is_reachable() -> None:
    reasons = {c[4] for c in CASES} | {exit_decision("normal").reason}
    assert reasons == {"booking", "standing", "exit_button", "unknown_credential", "outside_window", "wrong_door",
                       "cache_expired", "clock_untrusted", "lockdown", "rate_limited"}


def test_the_booking_for_the_doors_room_is_preferred() -> None:
    a, b = e("a", room="room-1"), e("b", room="room-2")
    assert run([a, b]).entry == a
    assert run([a, b], door_room="room-2").entry == b
    assert run([a, b], door_room="hall").entry == a


@pytest.mark.parametrize("mode", ["normal", "office_hours", "lockdown"])
def test_the_exit_button_always_opens(mode: Mode) -> None:
    assert exit_decision(mode) == Decision(True, "exit_button", None)


def test_a_decision_is_immutable() -> None:
    with pytest.raises(FrozenInstanceError):
        run([BOOKING]).granted = False  # type: ignore[misc]


# --- properties over random entries ----------------------------------------------------------

T = st.none() | st.integers(NOW - 200, NOW + 200)
ENTRY = st.builds(
    lambda i, doors, w, ref: e(f"e{i}", doors=tuple(doors), from_=w[0], until=w[1], ref=ref),
    st.integers(0, 10**6),
    st.lists(st.sampled_from([DOOR, "back", "room-1"]), max_size=3, unique=True),
    st.tuples(T, T).map(lambda w: (min(w), max(w)) if None not in w else w),  # type: ignore[type-var]
    st.none() | st.just("bk"),
)
ARGS = st.fixed_dictionaries({
    "now": st.integers(NOW - 300, NOW + 300),
    "cache_expires_at": st.none() | st.integers(NOW - 300, NOW + 300),
    "clock_trusted": st.booleans(),
    "mode": st.sampled_from(["normal", "office_hours", "lockdown"]),
    "rate_limited": st.booleans(),
})


def _in(x: Entry, now: int) -> bool:
    return (x.from_ is None or x.from_ <= now) and (x.until is None or now < x.until)


@settings(max_examples=400, deadline=None)
@given(entries=st.lists(ENTRY, max_size=6), kw=ARGS, seed=st.integers())
def test_decide_follows_the_rules_for_any_entries(entries: list[Entry], kw: dict[str, Any], seed: int) -> None:
    d = run(entries, **kw)
    now, mode = kw["now"], kw["mode"]
    expired = kw["cache_expires_at"] is not None and now >= kw["cache_expires_at"]
    here = [x for x in entries if DOOR in x.doors]
    unbounded = [x for x in here if x.ref is None and x.from_ is None and x.until is None]
    standing = [x for x in here if x.ref is None and (x in unbounded or (kw["clock_trusted"] and _in(x, now)))]
    bookings = [x for x in here if x.ref is not None and _in(x, now) and not expired and kw["clock_trusted"]]

    if mode == "lockdown":
        assert d == Decision(False, "lockdown")
    elif kw["rate_limited"]:
        assert d == Decision(False, "rate_limited")
    elif not entries:
        assert d == Decision(False, "unknown_credential")
    elif standing:
        assert d == Decision(True, "standing", standing[0])
    elif bookings:
        assert d == Decision(True, "booking", bookings[0])
    else:
        assert not d.granted and d.entry is None
        booked_here = [x for x in here if x.ref is not None]
        bounded_standing_here = [x for x in here if x.ref is None and x not in unbounded]
        if not here:
            assert d.reason == "wrong_door"
        elif booked_here and expired:
            assert d.reason == "cache_expired"
        elif (booked_here or bounded_standing_here) and not kw["clock_trusted"]:
            assert d.reason == "clock_untrusted"
        else:
            assert d.reason == "outside_window"

    # The order of the entries changes which entry is reported, never the outcome.
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    d2 = run(shuffled, **kw)
    assert (d2.granted, d2.reason) == (d.granted, d.reason)
    # More entries never take a grant away.
    if d.granted:
        assert run([*entries, *entries[:1], OTHER_DOOR, EARLIER], **kw).granted


# --- the denial limiter ------------------------------------------------------------------------


def test_limiter_allows_a_burst_then_limits() -> None:
    lim = DenialLimiter(burst=3, refill_seconds=60)
    for i in range(3):
        assert not lim.limited("r1", 100.0 + i)
        lim.record_denial("r1", 100.0 + i)
    assert lim.limited("r1", 103.0)


def test_limiter_refills_one_denial_per_period() -> None:
    lim = DenialLimiter(burst=2, refill_seconds=60)
    for _ in range(2):
        lim.record_denial("r1", 0.0)
    assert lim.limited("r1", 59.9)
    assert not lim.limited("r1", 60.0)
    lim.record_denial("r1", 60.0)
    assert lim.limited("r1", 60.0)
    assert lim.tokens("r1", 60.0 + 600) == 2.0  # never above the burst
    assert not lim.limited("r1", 60.0 + 600)


def test_limiter_keys_are_independent() -> None:
    lim = DenialLimiter(burst=1, refill_seconds=60)
    lim.record_denial("r1", 0.0)
    assert lim.limited("r1", 1.0)
    assert not lim.limited("r2", 1.0)


def test_limiter_survives_time_going_backwards() -> None:
    lim = DenialLimiter(burst=1, refill_seconds=60)
    lim.record_denial("r1", 1000.0)
    assert lim.limited("r1", 10.0)  # no refill from a backwards step...
    lim.record_denial("r1", 10.0)
    assert not lim.limited("r1", 70.0)  # ...and no waiting for the old time either


def test_denials_while_limited_do_not_go_negative() -> None:
    lim = DenialLimiter(burst=2, refill_seconds=10)
    for _ in range(50):
        lim.record_denial("r1", 0.0)
    assert lim.tokens("r1", 0.0) == 0.0
    assert not lim.limited("r1", 10.0)


@pytest.mark.parametrize(("burst", "refill"), [(0, 10.0), (1, 0.0), (1, -1.0), (1, float("inf"))])
def test_limiter_refuses_nonsense_settings(burst: int, refill: float) -> None:
    with pytest.raises(ValueError):
        DenialLimiter(burst, refill)


@settings(max_examples=200, deadline=None)
@given(burst=st.integers(1, 10), refill=st.floats(0.5, 100),
       steps=st.lists(st.tuples(st.floats(0, 50), st.booleans()), max_size=40))
def test_limiter_never_allows_more_than_burst_plus_refills(burst: int, refill: float,
                                                             steps: list[tuple[float, bool]]) -> None:
    lim = DenialLimiter(burst, refill)
    now, recorded = 0.0, 0
    for dt, attempt in steps:
        now += dt
        if attempt and not lim.limited("r", now):
            lim.record_denial("r", now)
            recorded += 1
    assert recorded <= burst + now / refill
