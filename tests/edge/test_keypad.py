"""PIN keypads on Wiegand: key bursts (4- and 8-bit) → ``pin:DIGITS``, what the rate limit
leaves a guesser per day, and a brute-force run against a real agent on mock pins."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import config as edge_config
from edge.clock import FakeClock
from edge.config import PolicySection
from edge.decide import DenialLimiter
from readers import ReaderError, make_reader
from readers.keypad import PinEntry
from readers.wiegand import WiegandConfig, WiegandDecoder, WiegandReader
from testkit.broker import Mosquitto
from testkit.site import write_site
from testkit.util import wait_for
from testkit.wiegand_pins import drive_bits
from wire import messages as m
from wire.topics import Kind

from .hubside import HubSide, agent_in_thread, entry

D0, D1 = 20, 21
KEYS = {"*": 10, "#": 11}


# --- an independent encoder ---------------------------------------------------------------------


def key_bits(ch: str, fmt: int) -> list[int]:
    """The burst a keypad sends for one key: 4 bits, or complement nibble + key nibble."""
    k = KEYS[ch] if ch in KEYS else int(ch)
    value = k if fmt == 4 else ((0xF ^ k) << 4) | k
    return [(value >> (fmt - 1 - i)) & 1 for i in range(fmt)]


def feed(dec: WiegandDecoder, keys: str, t: float, fmt: int = 4, gap: float = 0.3) -> tuple[list[str], float]:
    """Type ``keys`` at ``gap`` seconds apart starting at ``t``; every burst is ended."""
    out: list[str] = []
    for ch in keys:
        for j, b in enumerate(key_bits(ch, fmt)):
            out += dec.feed_bit(b, t + j * 0.002)
        t += 0.05
        out += dec.flush(t)
        t += gap
    return out, t


# --- the decoder ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [4, 8])
def test_digits_then_hash_give_a_pin_in_both_keypad_formats(fmt: int) -> None:
    dec = WiegandDecoder()
    out, _ = feed(dec, "4821#", 0.0, fmt)
    assert out == ["pin:4821"]
    assert dec.dropped == 0 and dec.keypad.entries == 1


def test_star_clears_and_too_short_or_too_long_entries_are_dropped_and_counted() -> None:
    dec = WiegandDecoder()
    out, t = feed(dec, "99*4821#", 0.0)
    assert out == ["pin:4821"] and dec.keypad.cleared == 1
    out, t = feed(dec, "123#", t)
    assert out == [] and dec.keypad.dropped == 1 and dec.dropped == 1
    out, t = feed(dec, "1234567890123#", t)  # 13 digits
    assert out == [] and dec.keypad.dropped == 2 and dec.dropped == 2
    out, _ = feed(dec, "123456789012#", t)  # 12 digits: the longest PIN
    assert out == ["pin:123456789012"]


def test_a_pause_longer_than_the_keypad_timeout_drops_the_partial_entry() -> None:
    dec = WiegandDecoder(keypad_timeout=5.0)
    _, t = feed(dec, "48", 0.0)
    out, t = feed(dec, "21#", t + 5.0)  # a passer-by's "48", then someone types "21#"
    assert out == [] and dec.keypad.timeouts == 1 and dec.keypad.dropped == 1
    out, _ = feed(dec, "4821#", t, gap=4.5)  # slow but within the timeout
    assert out == ["pin:4821"]


def test_malformed_key_bursts_are_dropped() -> None:
    dec = WiegandDecoder()
    bits = key_bits("5", 8)
    bits[0] ^= 1  # the upper nibble no longer the complement
    for j, b in enumerate(bits):
        dec.feed_bit(b, j * 0.002)
    assert dec.flush(None) == [] and dec.dropped == 1
    for b in (1, 1, 1, 1):  # 15: no key
        dec.feed_bit(b, 1.0)
    assert dec.flush(None) == [] and dec.dropped == 2
    assert not dec.keypad.pending


def test_random_key_streams_match_an_independent_model() -> None:
    rng = random.Random(4821)
    pe = PinEntry(timeout=5.0)
    digits: list[str] = []
    overlong = False
    last: float | None = None
    t = 0.0
    for _ in range(20000):
        t += rng.choice((0.2, 1.0, 3.0, 6.0))
        k = rng.choice([*range(12), 11, 11, 10])
        got = pe.key(k, t)
        if last is not None and t - last > 5.0:
            digits, overlong = [], False
        last = t
        want: str | None = None
        if k == 10:
            digits, overlong = [], False
        elif k == 11:
            if not overlong and 4 <= len(digits) <= 12:
                want = "pin:" + "".join(digits)
            digits, overlong = [], False
        elif len(digits) < 12:
            digits.append(str(k))
        else:
            overlong = True
        assert got == want


def test_a_keypad_beside_a_card_reader_on_the_same_door_is_a_valid_config(tmp_path: Path, broker: Mosquitto) -> None:
    layout = {
        "doors": [{"id": "eingang", "lock_pin": 17}],
        "readers": [
            {"id": "eingang-rfid", "type": "rdm6300", "door": "eingang", "port": "/dev/ttyAMA0"},
            {"id": "eingang-keypad", "type": "wiegand", "door": "eingang", "d0_pin": D0, "d1_pin": D1,
             "keypad_timeout_seconds": 8},
        ],
    }
    site = write_site(tmp_path / "s", "minheim", broker, Ed25519PrivateKey.generate(), layout=layout)
    cfg = edge_config.load(site.config_path)
    assert [(r.id, r.door) for r in cfg.readers] == [("eingang-rfid", "eingang"), ("eingang-keypad", "eingang")]
    assert cfg.readers[1].settings.keypad_timeout_seconds == 8


# --- the reader on mock pins -----------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.creds: list[str] = []

    def on_credential(self, reader_id: str, credential: str) -> None:
        self.creds.append(credential)

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:
        raise AssertionError(str(error))


def type_keys(factory: Any, reader: WiegandReader, keys: str, fmt: int = 4) -> None:
    """Press keys on the keypad's mock D0/D1 pins, one burst per key (each burst ends first)."""
    for ch in keys:
        drive_bits(factory, reader, key_bits(ch, fmt))
    wait_for(lambda: not reader.pending, 5, what="the last key's burst to end")


def test_the_same_pin_twice_is_two_entries_and_the_reader_counts_drops(mock_pins: Any) -> None:
    sink = Sink()
    cfg = WiegandConfig(id="keypad", d0_pin=D0, d1_pin=D1, holdoff_seconds=5)
    reader = make_reader(cfg, sink)
    assert isinstance(reader, WiegandReader)
    reader.start()
    try:
        type_keys(mock_pins, reader, "4821#4821#", fmt=8)  # no hold-off for PINs: each # is meant
        type_keys(mock_pins, reader, "12#")
        wait_for(lambda: reader.stats.dropped == 1, 5, what="the short entry counted")
        assert sink.creds == ["pin:4821", "pin:4821"]
        assert reader.stats.reads == 2
    finally:
        reader.stop()


# --- what the rate limit leaves a guesser --------------------------------------------------------------


def guesses_per_day(policy: PolicySection, days: int = 2) -> list[int]:
    """Guesses that reach the cache on each of ``days`` days when the attacker tries every
    second: each one a denial (a wrong PIN), so each takes a token."""
    lim = DenialLimiter(policy.deny_burst, policy.deny_refill_seconds)
    per_day = [0] * days
    for t in range(86400 * days):
        if not lim.limited("keypad", float(t)):
            per_day[t // 86400] += 1
            lim.record_denial("keypad", float(t))
    return per_day


def test_the_default_limit_allows_293_guesses_a_day_about_3_percent_of_four_digit_pins() -> None:
    policy = PolicySection()
    assert (policy.deny_burst, policy.deny_refill_seconds) == (5, 300.0)
    figure = policy.deny_burst + int(86400 // policy.deny_refill_seconds)
    assert figure == 293  # the burst, then one per refill period: 5 + 86400 / 300
    first, second = guesses_per_day(policy)
    # Measured on the limiter: the first day's last token comes due at the very end of
    # the day (292 within it), and every day after that brings 288.
    assert figure - 1 <= first <= figure and second == 288
    assert figure / 10_000 < 0.03  # a 4-digit PIN: at most 2.9 % of the space per day
    assert figure / 1_000_000 < 0.0003  # a 6-digit PIN: at most 0.03 %


LOCK = 17
PIN = "pin:4821"
CARD = "em4100:0A00B1C2D3"


def test_brute_force_on_a_keypad_turns_into_rate_limited_and_the_right_pin_waits_too(
    tmp_path: Path, broker: Mosquitto, mock_pins: Any
) -> None:
    hub_key = Ed25519PrivateKey.generate()
    layout = {
        "doors": [{"id": "eingang", "lock_pin": LOCK, "unlock_seconds": 1}],
        "readers": [
            {"id": "eingang-keypad", "type": "wiegand", "door": "eingang", "d0_pin": D0, "d1_pin": D1},
            {"id": "eingang-sim", "type": "sim", "door": "eingang"},
        ],
    }
    refill = 60
    site = write_site(tmp_path / "minheim", "minheim", broker, hub_key, layout=layout,
                      policy={"deny_burst": 5, "deny_refill_seconds": refill})
    clock = FakeClock(time.time())
    hub = HubSide(broker, hub_key, "minheim", now=clock.time)
    try:
        with agent_in_thread(site, clock=clock) as agent:
            hub.wait_online()
            hub.send(Kind.CACHE, hub.body_full([entry(site.cred_key, PIN, ["eingang"], ref=None, who="m-anna"),
                                                 entry(site.cred_key, CARD, ["eingang"], ref=None, who="m-bert")]))
            assert hub.cache_ack().ok
            keypad = agent.readers["eingang-keypad"]
            assert isinstance(keypad, WiegandReader)

            def denials() -> list[str]:
                return [e.reason for e in hub.events if isinstance(e, m.AccessDenied)]

            for guess in range(1000, 1007):  # seven wrong PINs, typed as fast as a script can
                type_keys(mock_pins, keypad, f"{guess}#")
            wait_for(lambda: len(denials()) == 7, 10, what="seven denials")
            assert denials() == ["unknown_credential"] * 5 + ["rate_limited"] * 2

            type_keys(mock_pins, keypad, "4821#")  # the right PIN, while limited
            wait_for(lambda: len(denials()) == 8, 10, what="the right PIN refused")
            assert denials()[-1] == "rate_limited"
            assert mock_pins.pin(LOCK).state == 0

            site.badge("eingang-sim", CARD)  # the limit is per keypad: the card reader still opens
            granted = hub.wait_event(lambda e: isinstance(e, m.AccessGranted))
            assert granted.who == "m-bert"  # type: ignore[attr-defined]

            clock.advance(refill)  # one token back: one more try
            type_keys(mock_pins, keypad, "4821#")
            ok = hub.wait_event(lambda e: isinstance(e, m.AccessGranted) and e.who == "m-anna")
            assert ok.reason == "standing"  # type: ignore[attr-defined]
            assert PIN not in str(hub.events)  # events carry keyed hashes only
    finally:
        hub.close()

