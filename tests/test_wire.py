"""The wire contract (PROTOCOL.md) in code: topics, messages, envelopes, credentials, seal."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import ALL_MESSAGES, CRED, IDENT, struct
from wire import creds, envelope, keys, seal
from wire import messages as m
from wire import topics as t
from wire.errors import KeyFileError, WireError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- topics ------------------------------------------------------------------------------


@given(IDENT, st.sampled_from(list(t.Kind)), IDENT)
def test_every_topic_parses_back_to_what_built_it(site: str, kind: t.Kind, door: str) -> None:
    name = t.topic(site, kind, door if kind is t.Kind.DOOR else None)
    assert t.parse(name) == t.Topic(site, kind, door if kind is t.Kind.DOOR else None)


@pytest.mark.parametrize("name", [
    "torwart/v2/site/minheim/event",
    "torwart/v1/site/Minheim/event",
    "torwart/v1/site/minheim/events",
    "torwart/v1/site/minheim/door/",
    "torwart/v1/site/minheim/door/Front",
    "torwart/v1/site/-minheim/status",
    "torwart/v1/site//status",
    "torwart/v1/site/minheim/event/ack/x",
])
def test_topics_outside_the_contract_are_refused(name: str) -> None:
    with pytest.raises(WireError) as exc:
        t.parse(name)
    assert exc.value.code == "malformed"


def test_topic_building_refuses_bad_ids() -> None:
    with pytest.raises(WireError):
        t.topic("a/b", t.Kind.EVENT)
    with pytest.raises(WireError):
        t.topic("x" * 65, t.Kind.EVENT)


def test_acl_patterns_match_protocol_section_2() -> None:
    assert t.site_acl_patterns() == [
        ("write", "torwart/v1/site/%u/status"),
        ("write", "torwart/v1/site/%u/event"),
        ("write", "torwart/v1/site/%u/occupancy"),
        ("write", "torwart/v1/site/%u/door/+"),
        ("write", "torwart/v1/site/%u/cache/ack"),
        ("write", "torwart/v1/site/%u/command/ack"),
        ("read", "torwart/v1/site/%u/event/ack"),
        ("read", "torwart/v1/site/%u/cache"),
        ("read", "torwart/v1/site/%u/cache/delta"),
        ("read", "torwart/v1/site/%u/command"),
    ]
    assert t.shared(t.site_filter(t.Kind.EVENT)) == "$share/hub/torwart/v1/site/+/event"


# --- messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_every_message_round_trips(cls: type[Any]) -> None:
    @SETTINGS
    @given(struct(cls))
    def check(msg: Any) -> None:
        data = m.encode(msg)
        assert m.decode(data, cls) == msg
        if isinstance(msg, m.Event):
            assert m.decode(data, m.AnyEvent) == msg  # the tag selects the right class
        if isinstance(msg, m.Body):
            assert m.decode(data, m.SignedBody) == msg

    check()


def _event(**over: Any) -> dict[str, Any]:
    base = {"type": "access.denied", "id": "e1", "site": "minheim", "seq": 1, "boot": "b", "ts": 1.0,
            "clock_synced": True, "door": "front", "cred": "0" * 32, "reason": "unknown_credential"}
    base.update(over)
    return base


@pytest.mark.parametrize(("over", "field"), [
    ({"seq": 0}, "$.seq"),
    ({"seq": "1"}, "$.seq"),
    ({"site": "Minheim"}, "$.site"),
    ({"cred": "ABC"}, "$.cred"),
    ({"reason": "because"}, "$.reason"),
    ({"door": None}, "$.door"),
    ({"ts": -1}, "$.ts"),
    ({"type": "access.maybe"}, "$.type"),
])
def test_a_bad_field_is_refused_by_name(over: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError) as exc:
        m.decode(m.encode(_event(**over)), m.AnyEvent)
    assert exc.value.code == "malformed"
    assert exc.value.field == field


def test_a_missing_field_is_refused_by_name() -> None:
    ev = _event()
    del ev["clock_synced"]
    with pytest.raises(WireError) as exc:
        m.decode(m.encode(ev), m.AnyEvent)
    assert "clock_synced" in str(exc.value)


def test_unknown_fields_are_tolerated_as_the_protocol_allows() -> None:
    ev = m.decode(m.encode(_event(vendor_extra={"x": 1})), m.AnyEvent)
    assert isinstance(ev, m.AccessDenied)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"type":"access.denied"}'])
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(WireError) as exc:
        m.decode(data, m.AnyEvent)
    assert exc.value.code == "malformed"


def test_cross_field_rules_are_enforced() -> None:
    entry = {"id": "x", "cred": "0" * 32, "doors": ["d"], "from": 10, "until": 5, "who": "w"}
    body = {"type": "cache.full", "site": "s", "version": 1, "issued_at": 1, "expires_at": 2, "entries": [entry]}
    with pytest.raises(WireError, match="after until"):
        m.decode(m.encode(body), m.SignedBody)
    entry.update({"from": 1, "until": 5})
    body["entries"] = [entry, entry]
    with pytest.raises(WireError, match="twice"):
        m.decode(m.encode(body), m.SignedBody)
    delta = {"type": "cache.delta", "site": "s", "version": 3, "base_version": 3, "issued_at": 1,
             "expires_at": 2, "upsert": [], "remove": []}
    with pytest.raises(WireError, match="base_version"):
        m.decode(m.encode(delta), m.SignedBody)
    cmd = {"type": "command", "site": "s", "id": "c", "issued_at": 1, "expires_at": 2, "action": "enroll",
           "reader": "r1", "seconds": 121}
    with pytest.raises(WireError, match="enroll"):
        m.decode(m.encode(cmd), m.SignedBody)


def test_booking_times_need_an_offset() -> None:
    b = {"id": "1", "resource_id": "r", "member_id": "m", "start": "2026-11-23T08:00:00",
         "end": "2026-11-23T09:00:00+01:00", "status": "confirmed", "updated_at": "2026-11-20T08:00:00Z"}
    with pytest.raises(WireError) as exc:
        m.decode(m.encode(b), m.Booking)
    assert exc.value.field == "$.start"


# --- envelopes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _cache(n: int = 3, site: str = "minheim") -> m.CacheFull:
    return m.CacheFull(site=site, version=7, issued_at=1_700_000_000, expires_at=1_700_600_000, entries=[
        m.Entry(id=f"e{i}", cred=hashlib.md5(str(i).encode()).hexdigest(), doors=["front"], from_=None,
                until=None, who=f"u-{i}", ref=None, room=None) for i in range(n)
    ])


@pytest.mark.parametrize("compress", [False, True])
def test_envelope_round_trip(hub_key: Ed25519PrivateKey, compress: bool) -> None:
    body = _cache(50)
    env = envelope.sign(body, hub_key, compress=compress)
    assert msgspec.json.decode(env)["enc"] == ("json+gzip" if compress else "json")
    assert envelope.open_body(env, envelope.trusted_keys(hub_key.public_key()), "minheim") == body


def test_envelope_fields_follow_the_protocol(hub_key: Ed25519PrivateKey) -> None:
    env = msgspec.json.decode(envelope.sign(_cache(), hub_key, compress=False))
    raw_pub = keys.ed25519_public_raw(hub_key.public_key())
    assert env["alg"] == "Ed25519"
    assert env["kid"] == hashlib.sha256(raw_pub).hexdigest()[:16]
    body = base64.b64decode(env["body"])
    hub_key.public_key().verify(base64.b64decode(env["sig"]), body)  # signature over exactly the body bytes
    assert msgspec.json.decode(body)["type"] == "cache.full"


@SETTINGS
@given(data=st.data(), compress=st.booleans())
def test_a_flipped_bit_anywhere_in_an_envelope_is_refused(
    hub_key: Ed25519PrivateKey, data: st.DataObject, compress: bool
) -> None:
    env = bytearray(envelope.sign(_cache(2), hub_key, compress=compress))
    bit = data.draw(st.integers(0, len(env) * 8 - 1))
    env[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(WireError) as exc:
        envelope.open_body(bytes(env), envelope.trusted_keys(hub_key.public_key()), "minheim")
    assert exc.value.code in {"malformed", "bad_signature", "unknown_key"}


def test_a_body_signed_by_another_key_is_refused(hub_key: Ed25519PrivateKey) -> None:
    trusted = envelope.trusted_keys(hub_key.public_key())
    rogue = Ed25519PrivateKey.generate()
    forged = envelope.sign(_cache(), rogue)
    with pytest.raises(WireError) as exc:
        envelope.open_body(forged, trusted, "minheim")
    assert exc.value.code == "unknown_key"
    # The same forgery claiming the trusted key's id fails the signature check.
    doc = msgspec.json.decode(forged)
    doc["kid"] = next(iter(trusted))
    with pytest.raises(WireError) as exc:
        envelope.open_body(msgspec.json.encode(doc), trusted, "minheim")
    assert exc.value.code == "bad_signature"


def test_an_envelope_over_the_limit_is_refused_before_it_is_decoded(hub_key: Ed25519PrivateKey) -> None:
    trusted = envelope.trusted_keys(hub_key.public_key())
    big = envelope.sign(_cache(2000), hub_key, compress=False)
    with pytest.raises(WireError) as exc:
        envelope.open_envelope(big, trusted, limit=len(big) - 1)
    assert exc.value.code == "too_large"
    # Not even JSON: still too_large, which shows the size check comes before any parsing.
    with pytest.raises(WireError) as exc:
        envelope.open_envelope(b"\xff" * 1025, trusted, limit=1024)
    assert exc.value.code == "too_large"


def test_a_signed_gzip_bomb_is_refused(hub_key: Ed25519PrivateKey) -> None:
    trusted = envelope.trusted_keys(hub_key.public_key())
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    env = envelope.sign(bomb, hub_key, compress=False)
    doc = msgspec.json.decode(env)
    doc["enc"] = "json+gzip"
    with pytest.raises(WireError) as exc:
        envelope.open_envelope(msgspec.json.encode(doc), trusted, limit=1024 * 1024)
    assert exc.value.code == "too_large"


def _with_trailer_size(gz: bytes, size: int) -> bytes:
    return gz[:-4] + size.to_bytes(4, "little")


@pytest.mark.parametrize(("body", "code"), [
    (_with_trailer_size(gzip.compress(b" " * (8 * 1024 * 1024), mtime=0), 10), "too_large"),  # a bomb that lies small
    (_with_trailer_size(gzip.compress(b"{}" * 100, mtime=0), 10), "malformed"),  # longer than it says
    (_with_trailer_size(gzip.compress(b"{}" * 100, mtime=0), 400), "malformed"),  # shorter than it says
    (gzip.compress(b"{}" * 100, mtime=0)[:-9], "malformed"),  # truncated
    (gzip.compress(b"{}", mtime=0) + b"x", "malformed"),  # trailing data
    (gzip.compress(b"{}", mtime=0) * 2, "malformed"),  # a second gzip member
    (b"\x1f\x8b", "malformed"),  # shorter than a header
    (b"\x1f\x8b" + b"\x00" * 30, "malformed"),  # not deflate
])
def test_a_signed_gzip_body_that_lies_about_itself_is_refused(hub_key: Ed25519PrivateKey, body: bytes,
                                                              code: str) -> None:
    trusted = envelope.trusted_keys(hub_key.public_key())
    doc = msgspec.json.decode(envelope.sign(body, hub_key, compress=False))
    doc["enc"] = "json+gzip"
    with pytest.raises(WireError) as exc:
        envelope.open_envelope(msgspec.json.encode(doc), trusted, limit=1024 * 1024)
    assert exc.value.code == code, exc.value


def test_a_body_for_another_site_is_refused(hub_key: Ed25519PrivateKey) -> None:
    env = envelope.sign(_cache(site="wittlich"), hub_key)
    with pytest.raises(WireError) as exc:
        envelope.open_body(env, envelope.trusted_keys(hub_key.public_key()), "minheim")
    assert exc.value.code == "wrong_site"


def test_a_signed_but_malformed_body_is_refused(hub_key: Ed25519PrivateKey) -> None:
    env = envelope.sign(b'{"type":"cache.full","site":"minheim"}', hub_key)
    with pytest.raises(WireError) as exc:
        envelope.open_body(env, envelope.trusted_keys(hub_key.public_key()), "minheim")
    assert exc.value.code == "malformed"


def test_non_canonical_base64_is_refused(hub_key: Ed25519PrivateKey) -> None:
    doc = msgspec.json.decode(envelope.sign(_cache(), hub_key, compress=False))
    sig = doc["sig"]  # 64 bytes → 88 chars ending "==": the last data char has 4 unused bits
    last = sig[-3]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    doc["sig"] = sig[:-3] + alphabet[alphabet.index(last) ^ 1] + sig[-2:]
    assert base64.b64decode(doc["sig"]) == base64.b64decode(sig)  # same bytes, other spelling
    with pytest.raises(WireError) as exc:
        envelope.open_body(msgspec.json.encode(doc), envelope.trusted_keys(hub_key.public_key()), "minheim")
    assert exc.value.code == "malformed"


# --- credentials -----------------------------------------------------------------------------


def _hmac_by_hand(key: bytes, msg: bytes) -> bytes:
    """RFC 2104 written out, independent of the hmac module the code uses."""
    block = 64
    k = key.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in k) + inner).digest()


@given(st.binary(min_size=32, max_size=32), st.sampled_from(
    ["em4100:0A00B1C2D3", "iso14443a:04A1B2C3D4E5F6", "wiegand26:3A1F2C", "pin:4821"]))
def test_credential_hash_matches_an_independent_computation(key: bytes, credential: str) -> None:
    assert creds.cred_hash(key, credential) == _hmac_by_hand(key, credential.encode())[:16].hex()


def test_credential_hash_matches_openssl() -> None:
    key = bytes(range(32))
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key.hex()}"],
        input=b"em4100:0A00B1C2D3", capture_output=True, check=True,
    ).stdout.decode()
    assert creds.cred_hash(key, "em4100:0A00B1C2D3") == out.split("= ")[-1].strip()[:32]


def test_credential_builders_follow_protocol_section_1() -> None:
    assert creds.em4100("0a00b1c2d3") == "em4100:0A00B1C2D3"
    assert creds.iso14443a(bytes.fromhex("04a1b2c3d4e5f6")) == "iso14443a:04A1B2C3D4E5F6"
    assert creds.wiegand(26, 0x3A1F2C) == "wiegand26:3A1F2C"
    assert creds.wiegand(34, 0x1) == "wiegand34:00000001"
    assert creds.pin("4821") == "pin:4821"
    for bad in ["em4100:0A00", "foo:12", "pin:12a4", "iso14443a:04A1", "0A00B1C2D3"]:
        with pytest.raises(WireError):
            creds.check_credential(bad)
    assert creds.redact("em4100:0A00B1C2D3") == "em4100:…"


def test_bits_credentials_are_all_bits_left_aligned_and_malformed_ones_refused() -> None:
    # PROTOCOL.md §1's own example: 37 bits in five bytes, the three padding bits zero.
    assert creds.check_credential("bits37:0A1B2C3D48") == "bits37:0A1B2C3D48"
    assert creds.bits(37, 0x0A1B2C3D48 >> 3) == "bits37:0A1B2C3D48"
    assert creds.bits(35, 1) == "bits35:0000000020"
    assert creds.bits(8, 0xA5) == "bits8:A5"
    for bad in ["bits37:0A1B2C3D49",  # a padding bit set
                "bits37:0A1B2C3D",  # too short
                "bits37:0a1b2c3d48",  # lower case
                "bits0:00", "bits1025:" + "00" * 129, "bits035:0000000020", "bits:00"]:
        with pytest.raises(WireError):
            creds.check_credential(bad)
    for n, v in ((35, 1 << 35), (0, 0), (8, -1)):
        with pytest.raises(ValueError):
            creds.bits(n, v)


@given(CRED)
def test_cred_strategy_is_valid_cred(cred: str) -> None:
    assert m.decode(m.encode(cred), m.Cred) == cred


# --- key files ----------------------------------------------------------------------------------


def test_key_files_are_written_0600_and_read_back(tmp_path: Path) -> None:
    raw = keys.new_key()
    p = keys.write_key_file(tmp_path / "site.key", raw)
    assert p.stat().st_mode & 0o777 == 0o600
    assert keys.read_key_file(p) == raw
    with pytest.raises(FileExistsError):
        keys.write_key_file(p, raw)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_files_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    p = keys.write_key_file(tmp_path / "k", keys.new_key())
    os.chmod(p, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keys.read_key_file(p)


@pytest.mark.parametrize("text", ["", "not base64!!", base64.b64encode(b"short").decode(),
                                  base64.b64encode(bytes(33)).decode()])
def test_malformed_key_files_are_refused(tmp_path: Path, text: str) -> None:
    p = tmp_path / "k"
    p.write_text(text)
    p.chmod(0o600)
    with pytest.raises(KeyFileError):
        keys.read_key_file(p)
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.read_key_file(tmp_path / "missing")


# --- enrollment seal -------------------------------------------------------------------------


def test_sealed_credential_opens_at_the_hub_only_unaltered_and_for_its_site() -> None:
    hub = X25519PrivateKey.generate()
    sealed = seal.seal("em4100:0A00B1C2D3", hub.public_key(), "minheim")
    assert "0A00B1C2D3" not in sealed
    assert seal.unseal(sealed, hub, "minheim") == "em4100:0A00B1C2D3"
    raw = bytearray(base64.b64decode(sealed))
    raw[40] ^= 1
    with pytest.raises(WireError):
        seal.unseal(base64.b64encode(bytes(raw)).decode(), hub, "minheim")
    with pytest.raises(WireError):
        seal.unseal(sealed, hub, "wittlich")  # bound to the site id
    with pytest.raises(WireError):
        seal.unseal(sealed, X25519PrivateKey.generate(), "minheim")


@pytest.mark.parametrize("data", [b'{"alg":"\xc8\x80x"}', b'{"type":"access.denied","id":"\xff"}'])
def test_invalid_utf8_inside_a_string_is_malformed_not_a_crash(data: bytes) -> None:
    with pytest.raises(WireError) as exc:
        m.decode(data, m.AnyEvent)
    assert exc.value.code == "malformed"
    with pytest.raises(WireError) as exc:
        envelope.open_envelope(data, {})
    assert exc.value.code == "malformed"


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_decoders(data: bytes) -> None:
    for type_ in (m.AnyEvent, m.SignedBody, m.Status, m.Occupancy, m.DoorState, m.EventAck, m.BookingPage):
        # Refused as malformed, or (rarely, e.g. b'{"items":[0,""]}' is a BookingPage) valid:
        # never any other exception.
        with contextlib.suppress(WireError):
            m.decode(data, type_)
    with pytest.raises(WireError):
        envelope.open_envelope(data, {})


def test_a_streamed_cache_full_yields_exactly_the_entries_of_the_decoded_one(hub_key: Ed25519PrivateKey) -> None:
    body = _cache(300)
    env = envelope.sign(body, hub_key)
    keys = envelope.trusted_keys(hub_key.public_key())
    streamed = envelope.open_body(env, keys, "minheim", stream=True)
    assert isinstance(streamed, m.CacheFullStream)
    assert (streamed.version, streamed.issued_at, streamed.expires_at) == (7, body.issued_at, body.expires_at)
    assert list(streamed.iter_entries()) == body.entries


def test_a_bad_entry_in_a_streamed_cache_is_refused_by_its_index() -> None:
    doc = {"type": "cache.full", "site": "s", "version": 1, "issued_at": 1, "expires_at": 2, "entries": [
        {"id": "a", "cred": "0" * 32, "doors": ["d"], "who": "w"},
        {"id": "b", "cred": "XYZ", "doors": ["d"], "who": "w"},
    ]}
    body = m.decode(m.encode(doc), m.SignedBodyStream)
    it = body.iter_entries()
    assert next(it).id == "a"
    with pytest.raises(WireError) as exc:
        next(it)
    assert (exc.value.code, exc.value.field) == ("malformed", "$.entries[1].cred")


def test_invalid_utf8_inside_an_unknown_key_is_malformed_too() -> None:
    # msgspec skips unknown keys without looking at them; the document is still not JSON.
    body = b'{"items": [], "\x80next_page_token": null}'
    with pytest.raises(WireError) as exc:
        m.decode(body, m.BookingPage)
    assert exc.value.code == "malformed"
    with pytest.raises(WireError) as exc:
        envelope.open_envelope(b'{"\x80":1,' + b'"alg":"Ed25519","kid":"x","enc":"json","body":"","sig":""}', {})
    assert exc.value.code == "malformed"


@pytest.mark.parametrize("at", [0, 65535, 65536, 65537, 131071, 199_999])
def test_a_large_document_is_checked_for_utf8_in_pieces_and_names_the_exact_byte(at: int) -> None:
    # Large bodies are validated piece by piece (no full-size copy); a character cut at a
    # piece boundary must still pass, and a bad byte must be reported where it is.
    good = ("xä€😀" * 20_000).encode()
    m.check_utf8(good)
    bad = bytearray(good)
    bad[at] = 0xFF
    with pytest.raises(UnicodeDecodeError) as plain:
        bytes(bad).decode()  # where Python's own decoder places the error
    assert at - 3 <= plain.value.start <= at
    with pytest.raises(WireError) as exc:
        m.check_utf8(bytes(bad))
    assert exc.value.code == "malformed"
    assert str(exc.value).endswith(f"not valid UTF-8 at byte {plain.value.start}")
    truncated = good[:-1]  # ends in the middle of the 4-byte emoji
    with pytest.raises(WireError) as exc:
        m.check_utf8(truncated)
    assert str(exc.value).endswith(f"not valid UTF-8 at byte {len(good) - 4}")


def test_an_osdp_raw_read_of_any_other_length_is_a_bits_credential() -> None:
    assert creds.bits_from_bytes(37, bytes.fromhex("0A1B2C3D4F")) == "bits37:0A1B2C3D48"
    assert creds.check_credential("bits37:0A1B2C3D48") == "bits37:0A1B2C3D48"
    assert creds.check_credential("bits8:FF") == "bits8:FF"
    for bad in ("bits37:0A1B2C3D", "bits37:0a1b2c3d48", "bits0:", "bits:00", "bits01:00", "bits2000:00",
                "bits8:GG"):
        with pytest.raises(WireError):
            creds.check_credential(bad)


@pytest.mark.parametrize("tag", ["reader.tamper", "reader.online", "reader.offline"])
def test_supervised_reader_events_round_trip_as_protocol_section_4_names_them(tag: str) -> None:
    cls = m.EVENT_TYPES[tag]
    ev = cls(id="e1", site="minheim", seq=1, boot="b1", ts=1_700_000_000, clock_synced=True, reader="front-in")
    assert m.decode(m.encode(ev), m.AnyEvent) == ev
    assert b'"reader":"front-in"' in m.encode(ev)
