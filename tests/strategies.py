"""Hypothesis strategies for every wire message, derived from msgspec's own type info so
that a field added to a message is covered without touching the tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from wire import messages as m

IDENT = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z")
CRED = st.from_regex(r"\A[0-9a-f]{32}\Z")
TIMES = st.integers(0, 2**33)


def _str(t: mi.StrType) -> st.SearchStrategy[str]:
    if t.pattern is not None:
        return st.from_regex(t.pattern, fullmatch=True)
    return st.text(min_size=t.min_length or 0, max_size=min(t.max_length or 40, 40))


def _of(t: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.StrType):
        return _str(t)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else -(2**40)
        return st.integers(lo, t.le if t.le is not None else 2**40)
    if isinstance(t, mi.FloatType):
        return st.floats(t.ge if t.ge is not None else -1e12, t.le if t.le is not None else 1e12,
                         allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of(*[_of(x) for x in t.types])
    if isinstance(t, mi.ListType):
        lo = t.min_length or 0
        return st.lists(_of(t.item_type), min_size=lo, max_size=max(lo, min(t.max_length or 3, 3)))
    if isinstance(t, mi.DictType):
        return st.dictionaries(_of(t.key_type), _of(t.value_type), max_size=3)
    if isinstance(t, mi.DateTimeType):
        tz = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=-5))])
        return st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1), timezones=tz)
    if isinstance(t, mi.RawType):
        return st.builds(lambda v: msgspec.Raw(m.encode(v)), st.integers())
    if isinstance(t, mi.StructType):
        return struct(t.cls)
    raise NotImplementedError(f"no strategy for {t!r}")


def _entry() -> st.SearchStrategy[m.Entry]:
    window = st.tuples(st.none() | TIMES, st.none() | TIMES).map(
        lambda w: tuple(sorted(w)) if None not in w else w  # type: ignore[type-var]
    )
    return st.builds(
        lambda id, cred, doors, w, who, ref, room: m.Entry(
            id=id, cred=cred, doors=doors, from_=w[0], until=w[1], who=who, ref=ref, room=room
        ),
        st.text(min_size=1, max_size=12), CRED, st.lists(IDENT, max_size=3), window,
        st.text(max_size=12), st.none() | st.text(max_size=12), st.none() | IDENT,
    )


def _unique_entries(entries: list[m.Entry]) -> list[m.Entry]:
    return list({e.id: e for e in entries}.values())


_OVERRIDES: dict[type, Any] = {}


def struct(cls: type[Any]) -> st.SearchStrategy[Any]:
    """A strategy for valid instances of the message class ``cls``."""
    if cls in _OVERRIDES:
        return _OVERRIDES[cls]  # type: ignore[no-any-return]
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: _of(f.type) for f in info.fields}
    if cls in (m.CacheFull,):
        fields["entries"] = st.lists(_entry(), max_size=4).map(_unique_entries)
    if cls is m.CacheDelta:
        fields["upsert"] = st.lists(_entry(), max_size=4).map(_unique_entries)

    def build(kw: dict[str, Any]) -> Any:
        try:
            return cls(**kw)
        except (ValueError, TypeError):
            return None  # violates a cross-field rule (__post_init__); filtered below

    return st.fixed_dictionaries(fields).map(build).filter(lambda x: x is not None)


_OVERRIDES[m.Entry] = _entry()

ALL_MESSAGES: list[type[Any]] = [
    *m.EVENT_TYPES.values(),
    m.CacheFull, m.CacheDelta, m.Command, m.Entry,
    m.Status, m.DoorState, m.Occupancy, m.RoomOccupancy, m.EventAck, m.CacheAck, m.CommandAck,
    m.Booking,
]
