"""Hypothesis strategies that turn a valid payload into a slightly (or badly) wrong one:
flipped bits, bytes cut out or put in, truncation, a field dropped, a field's value
replaced by one of another type, an unknown field added. Used by the abuse tests."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` changed in one of several ways (possibly into something still valid)."""
    how = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "drop_field", "retype_field",
                                "add_field", "nest"]))
    data = bytearray(payload)
    if how in ("flip", "delete", "insert", "truncate") or not payload.startswith(b"{"):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "delete" and data:
            del data[i:i + draw(st.integers(1, 8))]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:]
        return bytes(data)
    doc = json.loads(payload)
    if not isinstance(doc, dict) or not doc:
        return payload + b" "
    key = draw(st.sampled_from(sorted(doc)))
    if how == "drop_field":
        del doc[key]
    elif how == "retype_field":
        doc[key] = draw(JSON_VALUES)
    elif how == "add_field":
        doc[draw(st.text(min_size=1, max_size=10))] = draw(JSON_VALUES)
    else:
        doc = {key: doc}
    return json.dumps(doc).encode()
