"""Mutations of valid, hub-signed caches and commands, opened as a site opens them
(wire.envelope.open_body, streamed for a cache.full). A mutation is refused with a
PROTOCOL.md code, or it did not touch what was signed and the body is exactly the
original: a mutated cache can never grant anything the hub did not sign. (The random-bytes
and bit-flip cases of tests/test_wire.py, extended to every kind of change of real
envelopes, of all three signed kinds, compressed or not.)"""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire import envelope
from wire import messages as m
from wire.creds import cred_hash
from wire.errors import WireError

from .mutate import mutated

KEY = Ed25519PrivateKey.generate()
KEYS = envelope.trusted_keys(KEY.public_key())
SITE_KEY = b"k" * 32
NOW = int(time.time())
CODES = {"bad_signature", "unknown_key", "wrong_site", "malformed", "too_large"}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _entries(n: int) -> list[m.Entry]:
    return [m.Entry(id=f"bk-{i}:{i:016x}", cred=cred_hash(SITE_KEY, f"em4100:0A00B1C2{i:02X}"), doors=["eingang"],
                    from_=NOW - 600, until=NOW + 3600, who=f"m-{i:016x}", ref=f"bk-{i}", room=None) for i in range(n)]


BODIES: dict[str, m.Body] = {
    "cache.full": m.CacheFull(site="minheim", version=9, issued_at=NOW, expires_at=NOW + 86400,
                              entries=_entries(40)),
    "cache.delta": m.CacheDelta(site="minheim", version=10, base_version=9, issued_at=NOW,
                                expires_at=NOW + 86400, upsert=_entries(3), remove=["bk-7:0000000000000007"]),
    "command": m.Command(site="minheim", id="c-1", issued_at=NOW, expires_at=NOW + 60, action="unlock",
                         door="eingang", seconds=5),
}
ENVELOPES = {(name, compress): envelope.sign(body, KEY, compress=compress)
             for name, body in BODIES.items() for compress in (False, True)}


def _same(opened: object, original: m.Body) -> bool:
    if isinstance(opened, m.CacheFullStream):
        assert isinstance(original, m.CacheFull)
        return (opened.site, opened.version, opened.issued_at, opened.expires_at, list(opened.iter_entries())) == \
            (original.site, original.version, original.issued_at, original.expires_at, original.entries)
    return opened == original


@pytest.mark.parametrize(("name", "compress"), sorted(ENVELOPES), ids=[f"{n}-{'gzip' if c else 'plain'}"
                                                                         for n, c in sorted(ENVELOPES)])
@FUZZ
@given(data=st.data())
def test_a_mutated_envelope_is_refused_or_is_exactly_what_the_hub_signed(name: str, compress: bool,
                                                                          data: st.DataObject) -> None:
    original = BODIES[name]
    env = ENVELOPES[(name, compress)]
    bad = data.draw(mutated(env), label="mutated envelope")
    for stream in (False, True):
        try:
            opened = envelope.open_body(bad, KEYS, "minheim", stream=stream)  # type: ignore[call-overload]
        except WireError as exc:
            assert exc.code in CODES
            continue
        assert _same(opened, original), "a changed body got through the signature check"


@FUZZ
@given(data=st.data())
def test_a_mutated_body_signed_by_another_key_is_refused_as_unknown_key(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(BODIES)))
    raw = m.encode(BODIES[name])
    changed = data.draw(mutated(raw))
    env = envelope.sign(changed, Ed25519PrivateKey.generate())  # a well-formed forgery
    with pytest.raises(WireError) as exc:
        envelope.open_body(env, KEYS, "minheim")
    assert exc.value.code == "unknown_key"
