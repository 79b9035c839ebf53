"""Bad input never becomes a credential: random and mutated input into the pure parsers
(RDM6300 frames, PN532 frames, Wiegand bit trains), checked by code written here
independently of the parsers (checksums and parities re-computed in the test).

"Zero grants": every credential that comes out is hashed with the site key; a hash that
matches an enrolled card is only allowed when the fed input held exactly that card's
valid frame (or bit train).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from functools import reduce
from operator import xor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readers.pn532_codec import (
    ACK,
    ERROR_FRAME,
    NACK,
    Frame,
    FrameParser,
    Kind,
    build_frame,
    parse_firmware,
    parse_target_uid,
)
from readers.rdm6300 import Rdm6300Parser
from readers.wiegand import WiegandDecoder
from wire.creds import check_credential, cred_hash

SEED = 0x70_52_77_61  # fixed: every run feeds the same input
N = 100_000
HEX = b"0123456789ABCDEFabcdef"
NOT_HEX_OR_STX = [b for b in range(256) if b not in HEX and b != 0x02]
NOT_STX_OR_ETX = [b for b in range(256) if b not in (0x02, 0x03)]
NOT_STX = [b for b in range(256) if b != 0x02]


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


class Enrolled:
    """Enrolled credentials of a site, as the cache holds them: keyed hashes only."""

    def __init__(self, rng: random.Random, creds: list[str]) -> None:
        self.key = rng.randbytes(32)
        self.hashes = {cred_hash(self.key, c) for c in creds}
        self._seen: dict[str, bool] = {}  # the same few credentials come out again and again

    def grants(self, cred: str) -> bool:
        hit = self._seen.get(cred)
        if hit is None:
            hit = self._seen[cred] = cred_hash(self.key, cred) in self.hashes
        return hit


def chunks(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """``data`` cut at random points, as a UART delivers it."""
    i = 0
    while i < len(data):
        n = rng.randint(1, 20)
        yield data[i:i + n]
        i += n


# --- RDM6300 ---------------------------------------------------------------------------

RDM_FRAME = re.compile(rb"\x02([0-9A-Fa-f]{10})([0-9A-Fa-f]{2})\x03")


def rdm_frame(card: str, lower: bool = False) -> bytes:
    check = reduce(xor, bytes.fromhex(card))
    text = f"{card}{check:02X}"
    return b"\x02" + (text.lower() if lower else text).encode() + b"\x03"


def rdm_valid_frames(window: bytes) -> set[str]:
    """The credentials of every RDM6300 frame in ``window`` whose checksum adds up."""
    found = set()
    for m in RDM_FRAME.finditer(window):
        data = bytes.fromhex(m.group(1).decode())
        if reduce(xor, data) == int(m.group(2), 16):
            found.add("em4100:" + m.group(1).decode().upper())
    return found


def rdm_mutate(rng: random.Random, frame: bytes) -> tuple[str, bytes, int, bool]:
    """A mutated frame: (class, bytes, drops it must cause, whether its card is still read).
    Followed by a valid frame, each class has an exactly known outcome."""
    f = bytearray(frame)
    kind = rng.choice(["checksum", "digit", "nonhex", "etx", "short", "long", "noise", "lower", "stx"])
    if kind in ("checksum", "digit"):
        pos = rng.randint(11, 12) if kind == "checksum" else rng.randint(1, 10)
        old = int(chr(f[pos]), 16)
        f[pos] = ord(f"{rng.choice([v for v in range(16) if v != old]):X}")
        return kind, bytes(f), 1, False
    if kind == "nonhex":
        f[rng.randint(1, 12)] = rng.choice(NOT_HEX_OR_STX)
        return kind, bytes(f), 1, False
    if kind == "etx":
        f[13] = rng.choice(NOT_STX_OR_ETX)
        return kind, bytes(f), 1, False
    if kind == "short":
        return kind, bytes(f[:rng.randint(1, 13)]), 1, False
    if kind == "long":
        extra = bytes(rng.choices(NOT_STX_OR_ETX, k=rng.randint(1, 3)))
        pos = rng.randint(1, 13)
        return kind, bytes(f[:pos]) + extra + bytes(f[pos:]), 1, False
    if kind == "noise":
        noise = bytes(rng.choices(NOT_STX, k=rng.randint(1, 10)))
        return kind, noise + frame, 1, True
    if kind == "lower":
        return kind, frame.lower(), 0, True
    f[rng.randint(1, 13)] = 0x02  # a new frame starts inside: both halves are short
    return kind, bytes(f), 2, False


def test_rdm6300_random_bytes_never_give_an_unverified_credential(rng: random.Random) -> None:
    cards = [f"{rng.getrandbits(40):010X}" for _ in range(16)]
    enrolled = Enrolled(rng, ["em4100:" + c for c in cards])
    alphabet = list(HEX) + [0x02] * 6 + [0x03] * 4 + list(range(256))
    parser = Rdm6300Parser(holdoff=0.0)
    history = b""
    outputs = grants = 0
    for i in range(N):
        if rng.random() < 0.1:  # sometimes a whole valid frame, of an enrolled card or not
            case = rdm_frame(rng.choice(cards) if rng.random() < 0.5 else f"{rng.getrandbits(40):010X}")
        else:
            case = bytes(rng.choices(alphabet, k=rng.randint(1, 30)))
        history = (history + case)[-64:]
        out = parser.feed(case, float(i))
        if out:
            window = history[-(len(case) + 13):]  # a frame completed now ends inside case
            valid = rdm_valid_frames(window)
            for cred in out:
                assert cred in valid
                grants += enrolled.grants(cred)
            outputs += len(out)
    assert outputs > 5_000  # the valid frames sprinkled in came out
    assert grants > 0 and parser.dropped > 0


def test_rdm6300_mutated_frames_are_dropped_counted_and_never_granted(rng: random.Random) -> None:
    cards = [f"{rng.getrandbits(40):010X}" for _ in range(16)]
    enrolled = Enrolled(rng, ["em4100:" + c for c in cards])
    parser = Rdm6300Parser(holdoff=0.0)
    grants = expected_grants = 0
    for i in range(N):
        card = rng.choice(cards) if rng.random() < 0.7 else f"{rng.getrandbits(40):010X}"
        sentinel = rng.choice(cards)
        kind, bad, drops, readable = rdm_mutate(rng, rdm_frame(card))
        before = parser.dropped
        out: list[str] = []
        for piece in chunks(rng, bad + rdm_frame(sentinel)):
            out += parser.feed(piece, float(i))
        expected = (["em4100:" + card] if readable else []) + ["em4100:" + sentinel]
        assert out == expected, kind
        assert parser.dropped - before == drops, kind
        for cred in out:
            if enrolled.grants(cred):
                grants += 1
        expected_grants += sum(enrolled.grants(c) for c in expected)
    assert grants == expected_grants  # only the exact valid frames of enrolled cards
    assert parser.frames >= N  # every sentinel came through


def test_rdm6300_holds_off_repeats_of_the_same_card_only() -> None:
    parser = Rdm6300Parser(holdoff=1.0)
    a, b = rdm_frame("0A00B1C2D3"), rdm_frame("1F2E3D4C5B")
    assert parser.feed(a, 0.0) == ["em4100:0A00B1C2D3"]
    assert parser.feed(a * 3, 0.5) == []  # the card stays in the field
    assert parser.feed(a, 1.4) == []  # still: each repeat extends the presentation
    assert parser.feed(b, 1.5) == ["em4100:1F2E3D4C5B"]  # another card: at once
    assert parser.feed(a, 1.6) == ["em4100:0A00B1C2D3"]
    assert parser.feed(a, 2.7) == ["em4100:0A00B1C2D3"]  # away longer than the hold-off
    assert parser.suppressed == 4 and parser.dropped == 0


@settings(max_examples=200, deadline=None)
@given(card=st.from_regex(r"\A[0-9A-F]{10}\Z"), lower=st.booleans(),
       cuts=st.lists(st.integers(0, 14), max_size=6))
def test_rdm6300_valid_frame_reads_in_any_chunking(card: str, lower: bool, cuts: list[int]) -> None:
    frame = rdm_frame(card, lower)
    bounds = [0, *sorted(cuts), len(frame)]
    parser = Rdm6300Parser()
    out: list[str] = []
    for lo, hi in itertools.pairwise(bounds):
        out += parser.feed(frame[lo:hi], 0.0)
    assert out == ["em4100:" + card]
    assert parser.dropped == 0


# --- PN532 -------------------------------------------------------------------------------


def pn_frame(tfi: int, data: bytes) -> bytes:
    """Independent encoder, straight from the user manual."""
    body = bytes([tfi]) + data
    return bytes([0, 0, 0xFF, len(body), (256 - len(body)) % 256]) + body + bytes([(256 - sum(body) % 256) % 256, 0])


def pn_check(frame: Frame, window: bytes) -> None:
    """Re-verify a parsed frame from its raw bytes, and that it was really fed."""
    raw = frame.raw
    assert raw in window
    assert raw[:2] == b"\x00\xff"
    if frame.kind is Kind.ACK:
        assert raw == ACK[1:]
        return
    if frame.kind is Kind.NACK:
        assert raw == NACK[1:]
        return
    length, lcs = raw[2], raw[3]
    assert (length + lcs) % 256 == 0 and len(raw) == length + 6 and raw[-1] == 0
    body = raw[4:4 + length]
    assert (sum(body) + raw[4 + length]) % 256 == 0
    assert frame.tfi == body[0] and frame.data == body[1:]
    assert (frame.kind is Kind.ERROR) == (body == b"\x7f")


def target(uid: bytes) -> bytes:
    return b"\x4b\x01\x01\x00\x44\x00" + bytes([len(uid)]) + uid


def pn_grant(frame: Frame, enrolled: Enrolled) -> bytes | None:
    """The enrolled UID this frame would grant, if any."""
    if frame.kind is not Kind.DATA or frame.tfi != 0xD5:
        return None
    try:
        uid = parse_target_uid(frame.data)
    except ValueError:
        return None
    if uid is None:
        return None
    return uid if enrolled.grants("iso14443a:" + uid.hex().upper()) else None


def random_uid(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((4, 7, 10)))


def pn_valid(rng: random.Random, uids: list[bytes]) -> bytes:
    r = rng.random()
    if r < 0.15:
        return ACK
    if r < 0.2:
        return NACK
    if r < 0.25:
        return ERROR_FRAME
    if r < 0.35:
        return pn_frame(0xD5, b"\x4b\x00")
    if r < 0.4:
        return pn_frame(rng.choice((0xD4, 0xD5)), rng.randbytes(rng.randint(1, 40)))
    return pn_frame(0xD5, target(rng.choice(uids) if rng.random() < 0.7 else random_uid(rng)))


def pn_mutate(rng: random.Random, frame: bytes) -> tuple[str, bytes, int | None, bool]:
    """(class, bytes, exact drops or None if not knowable, whether the frame still parses)."""
    f = bytearray(frame)
    kind = rng.choice(["lcs", "dcs", "postamble", "cut", "noise", "random"])
    knowable = b"\x00\xff" not in frame[3:]  # no start code hidden inside to resync on
    if kind == "lcs":
        v = rng.randrange(256)
        while (f[3] + v) % 256 == 0 or (f[3], v) in ((0, 0xFF), (0xFF, 0)):
            v = rng.randrange(256)
        f[4] = v
        return kind, bytes(f), 1 if knowable and b"\x00\xff" not in f[3:] else None, False
    if kind == "dcs":
        f[-2] = (f[-2] + rng.randint(1, 255)) % 256
        return kind, bytes(f), 1 if knowable and b"\x00\xff" not in f[3:] else None, False
    if kind == "postamble":
        f[-1] = rng.randint(1, 255)
        return kind, bytes(f), 1 if knowable and b"\x00\xff" not in f[3:] else None, False
    if kind == "cut":
        k = rng.randint(1, len(f) - 1)
        knowable = k <= 4 and frame != NACK  # a NACK cut after FF FF forms a NACK with what follows
        return kind, bytes(f[:k]), (0 if k <= 2 else 1) if knowable else None, False
    if kind == "noise":
        return kind, bytes(rng.randint(1, 0xFE) for _ in range(rng.randint(1, 10))) + frame, 1, True
    for _ in range(rng.randint(1, 4)):
        f[rng.randrange(len(f))] = rng.randrange(256)
    return kind, bytes(f), None, bytes(f) == frame


def test_pn532_random_bytes_never_give_an_unverified_frame(rng: random.Random) -> None:
    uids = [random_uid(rng) for _ in range(16)]
    enrolled = Enrolled(rng, ["iso14443a:" + u.hex().upper() for u in uids])
    alphabet = [0x00] * 40 + [0xFF] * 20 + [0xD5, 0xD4, 0x4B, 0x01, 0x7F, 0x81] * 3 + list(range(256))
    parser = FrameParser()
    history = b""
    frames = 0
    for _ in range(N):
        valid = rng.random() < 0.1
        case = pn_valid(rng, uids) if valid else bytes(rng.choices(alphabet, k=rng.randint(1, 40)))
        history = (history + case)[-600:]
        for frame in parser.feed(case):
            pn_check(frame, history)
            uid = pn_grant(frame, enrolled)
            if uid is not None:  # only the exact valid response for that card
                assert pn_frame(0xD5, frame.data)[1:] == frame.raw and frame.raw in history
            frames += 1
    assert frames > 5_000 and parser.dropped > 0


def test_pn532_mutated_frames_are_dropped_counted_and_never_granted(rng: random.Random) -> None:
    uids = [random_uid(rng) for _ in range(16)]
    enrolled = Enrolled(rng, ["iso14443a:" + u.hex().upper() for u in uids])
    parser = FrameParser()
    history = b""
    knowable = 0
    for _ in range(N):
        frame = pn_valid(rng, uids)
        sentinel = pn_valid(rng, uids)
        kind, bad, drops, readable = pn_mutate(rng, frame)
        before = parser.dropped
        case = bad + sentinel
        history = (history + case)[-2000:]
        out: list[Frame] = []
        for piece in chunks(rng, case):
            out += parser.feed(piece)
        for f in out:
            pn_check(f, history)
            uid = pn_grant(f, enrolled)
            if uid is not None:  # an enrolled card only from its exact valid response, fed as such
                assert f.raw == pn_frame(0xD5, f.data)[1:] and f.raw in case
        if drops is not None:
            knowable += 1
            assert [f.raw for f in out] == ([frame[1:]] if readable else []) + [sentinel[1:]], kind
            assert parser.dropped - before == drops, kind
        else:  # zeros complete any frame the garbage left open, an ACK resets the drop accounting
            parser.feed(bytes(300) + ACK)
    assert knowable > N // 2


def test_pn532_codec_matches_the_user_manual() -> None:
    assert build_frame(b"\x02") == bytes.fromhex("0000ff02fed4022a00")  # GetFirmwareVersion
    assert build_frame(bytes.fromhex("14011401")) == bytes.fromhex("0000ff05fbd4140114010200")
    parser = FrameParser()
    out = parser.feed(ACK + bytes.fromhex("0000ff06fad50332010607e800") + NACK + ERROR_FRAME)
    assert [f.kind for f in out] == [Kind.ACK, Kind.DATA, Kind.NACK, Kind.ERROR]
    assert parse_firmware(out[1].data) == (0x32, 0x01, 0x06, 0x07)
    assert parser.dropped == 0


def test_pn532_target_response_gives_the_uid_or_nothing() -> None:
    assert parse_target_uid(b"\x4b\x00") is None
    assert parse_target_uid(target(bytes.fromhex("04A1B2C3D4E5F6"))) == bytes.fromhex("04A1B2C3D4E5F6")
    with_ats = b"\x4b\x01\x01\x00\x04\x20\x04\xde\xad\xbe\xef\x05\x75\x77\x81\x02"
    assert parse_target_uid(with_ats) == bytes.fromhex("DEADBEEF")
    for bad in (b"\x4b", b"\x4b\x01\x01\x00", b"\x4b\x01\x01\x00\x04\x08\x05\x01\x02\x03\x04\x05",
                b"\x4b\x01\x01\x00\x04\x08\x07\x01\x02", b"\x4d\x00"):
        with pytest.raises(ValueError):
            parse_target_uid(bad)


@settings(max_examples=200, deadline=None)
@given(tfi=st.integers(0, 255), data=st.binary(max_size=253), cut=st.integers(0, 300))
def test_pn532_frames_round_trip_in_any_chunking(tfi: int, data: bytes, cut: int) -> None:
    frame = build_frame(data, tfi)
    assert frame == pn_frame(tfi, data)
    parser = FrameParser()
    out = parser.feed(frame[:cut]) + parser.feed(frame[cut:])
    assert len(out) == 1 and out[0].raw == frame[1:]
    assert (out[0].tfi, out[0].data) == (tfi, data) or out[0].kind is Kind.ERROR
    assert parser.dropped == 0


# --- Wiegand -------------------------------------------------------------------------------


def wg_bits(nbits: int, data: int) -> list[int]:
    n = nbits - 2
    bits = [(data >> (n - 1 - i)) & 1 for i in range(n)]
    return [sum(bits[: n // 2]) % 2, *bits, 1 - sum(bits[n // 2:]) % 2]


# 35-bit HID Corporate 1000 and 37-bit HID H10304, re-derived here the way the Proxmark3
# client packs them (a 35-/37-bit integer, first bit sent = most significant; parity masks
# over that integer) rather than by bit positions as readers/wiegand.py does.
C1K_P2_MASK = 0x1B6DB6DB6  # even parity (bit 33) over positions 3-4, 6-7, …, 33-34
C1K_P35_MASK = 0x36DB6DB6C  # odd parity (bit 0) over positions 2-3, 5-6, …, 32-33
H37_EVEN_MASK = ((1 << 18) - 1) << 18  # positions 2-19
H37_ODD_MASK = ((1 << 18) - 1) << 1  # positions 19-36


def _ones(v: int) -> int:
    return bin(v).count("1") & 1


def c1k35_value(company: int, card: int) -> int:
    v = (company & 0xFFF) << 21 | (card & 0xFFFFF) << 1
    v |= _ones(v & C1K_P2_MASK) << 33
    v |= 1 ^ _ones(v & C1K_P35_MASK)
    return v | (1 ^ _ones(v)) << 34


def h10304_value(facility: int, card: int) -> int:
    v = (facility & 0xFFFF) << 20 | (card & 0x7FFFF) << 1
    v |= _ones(v & H37_EVEN_MASK) << 36
    return v | (1 ^ _ones(v & H37_ODD_MASK))


def as_bits(nbits: int, v: int) -> list[int]:
    return [(v >> (nbits - 1 - i)) & 1 for i in range(nbits)]


def bits_cred(nbits: int, v: int) -> str:
    pad = -nbits % 8
    return f"bits{nbits}:{v << pad:0{(nbits + pad) // 4}X}"


def wg_expect(bits: list[int]) -> str | None:
    """Independent check: the credential a train must give, or None."""
    v = int("".join(map(str, bits)) or "0", 2)
    if len(bits) == 35:
        ok = (not _ones(v & (C1K_P2_MASK | 1 << 33)) and _ones(v & (C1K_P35_MASK | 1)) and _ones(v))
        return bits_cred(35, v) if ok else None
    if len(bits) == 37:
        ok = not _ones(v & (H37_EVEN_MASK | 1 << 36)) and _ones(v & (H37_ODD_MASK | 1))
        return bits_cred(37, v) if ok else None
    if len(bits) not in (26, 34):
        return None
    n = len(bits) - 2
    data = bits[1:-1]
    if (bits[0] + sum(data[: n // 2])) % 2 or (sum(data[n // 2:]) + bits[-1]) % 2 != 1:
        return None
    value = int("".join(map(str, data)), 2)
    return f"wiegand{len(bits)}:{value:0{n // 4}X}"


def test_wiegand_random_and_mutated_trains_never_give_a_bad_parity_credential(rng: random.Random) -> None:
    cards = [(26, rng.getrandbits(24)) for _ in range(8)] + [(34, rng.getrandbits(32)) for _ in range(8)]
    long_cards = ([as_bits(35, c1k35_value(rng.getrandbits(12), rng.getrandbits(20))) for _ in range(6)]
                  + [as_bits(37, h10304_value(rng.getrandbits(16), rng.getrandbits(19))) for _ in range(6)])
    enrolled = Enrolled(rng, [f"wiegand{n}:{d:0{(n - 2) // 4}X}" for n, d in cards]
                        + [str(wg_expect(b)) for b in long_cards])
    dec = WiegandDecoder(timeout=0.025)
    t = 0.0
    grants = expected_grants = expected_drops = delivered = 0
    pending: list[int] | None = None  # the train whose burst the next bit will end

    def check(out: list[str], bits: list[int]) -> None:
        nonlocal grants, expected_grants, expected_drops, delivered
        want = wg_expect(bits)
        assert out == ([want] if want else [])
        delivered += len(out)
        expected_drops += want is None
        for cred in out:
            grants += enrolled.grants(cred)
        expected_grants += bool(want and enrolled.grants(want))

    for i in range(N):
        r = rng.random()
        if r < 0.5:
            # Keypad lengths (4, 8) are keys, fuzzed in tests/edge/test_keypad.py.
            nbits = rng.choice((26, 34, 35, 37, rng.choice([n for n in range(1, 71) if n not in (4, 8)])))
            bits = [rng.getrandbits(1) for _ in range(nbits)]
        else:
            bits = wg_bits(*rng.choice(cards)) if rng.random() < 0.6 else list(rng.choice(long_cards))
            m = rng.random()
            if m < 0.25:
                bits[rng.randrange(len(bits))] ^= 1
            elif m < 0.5:
                del bits[rng.randrange(len(bits))]
            elif m < 0.75:
                bits.insert(rng.randrange(len(bits) + 1), rng.getrandbits(1))
        t += 0.1  # a quiet gap: a new burst
        gap = rng.uniform(0.0005, 0.02)  # within a burst bits are less than the timeout apart
        for j, b in enumerate(bits):
            out = dec.feed_bit(b, t)
            if j == 0 and pending is not None:
                check(out, pending)  # this bit came after the gap: it ended the last burst
                pending = None
            else:
                assert out == []
            t += gap
        if i % 2:
            assert dec.flush(t) == []  # not quiet long enough yet
            check(dec.flush(t + 0.03), bits)
        else:
            pending = bits
    if pending is not None:
        check(dec.flush(None), pending)
    assert dec.dropped == expected_drops and dec.bursts == N
    assert grants == expected_grants and delivered > N // 10


def test_wiegand_burst_ends_only_after_the_timeout() -> None:
    dec = WiegandDecoder(timeout=0.025)
    for k, b in enumerate(wg_bits(26, 0x3A1F2C)):
        assert dec.feed_bit(b, k * 0.002) == []
    last = 25 * 0.002
    assert dec.flush(last + 0.01) == []  # still inside the burst
    assert dec.pending
    assert dec.flush(last + 0.025) == ["wiegand26:3A1F2C"]
    assert not dec.pending and dec.dropped == 0


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from([26, 34]), data=st.integers(0, 2**32 - 1))
def test_wiegand_valid_trains_round_trip(fmt: int, data: int) -> None:
    data &= (1 << (fmt - 2)) - 1
    dec = WiegandDecoder()
    for k, b in enumerate(wg_bits(fmt, data)):
        dec.feed_bit(b, k * 0.001)
    assert dec.flush(None) == [f"wiegand{fmt}:{data:0{(fmt - 2) // 4}X}"]


def test_wiegand_35_and_37_bit_examples_decode_to_the_bits_an_osdp_reader_gives() -> None:
    """Worked by hand from the HID format definitions, independent of both encoders.

    Corporate 1000, company 0, card 0: the data and position 2 (even over zeros) are 0,
    position 35 (odd over 2-3, 5-6, …) is 1, position 1 (odd over all) is then 0: the
    35-bit value 1, left-aligned in five bytes: 0x20. H10304, facility 1, card 1: positions
    17 and 36 are set; position 1 (even over 1-19) is 1, position 37 (odd over 19-37) 0:
    2**36 + 2**20 + 2**1, shifted left 3 into five bytes: 0x8000800010.
    """
    assert c1k35_value(0, 0) == 1 and h10304_value(1, 1) == 2**36 + 2**20 + 2
    for bits, want in ((as_bits(35, 1), "bits35:0000000020"),
                       (as_bits(37, 2**36 + 2**20 + 2), "bits37:8000800010")):
        dec = WiegandDecoder()
        for k, b in enumerate(bits):
            dec.feed_bit(b, k * 0.001)
        assert dec.flush(None) == [want]
        assert check_credential(want) == want


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from([35, 37]), site=st.integers(0, 0xFFFF), card=st.integers(0, 0x7FFFF),
       flip=st.integers(0, 36))
def test_wiegand_35_and_37_bit_cards_round_trip_and_any_flipped_bit_is_dropped(
        fmt: int, site: int, card: int, flip: int) -> None:
    v = c1k35_value(site, card) if fmt == 35 else h10304_value(site, card)
    dec = WiegandDecoder()
    for k, b in enumerate(as_bits(fmt, v)):
        dec.feed_bit(b, k * 0.001)
    assert dec.flush(None) == [bits_cred(fmt, v)]
    bad = as_bits(fmt, v)
    bad[flip % fmt] ^= 1  # every bit of both formats is under at least one parity
    for k, b in enumerate(bad):
        dec.feed_bit(b, 1 + k * 0.001)
    assert dec.flush(None) == [] and dec.dropped == 1 and dec.bursts == 2
