"""100,000 random and mutated OSDP frames from the reader side of the bus, toward the
control panel, while a real reader (libosdp's PeripheralDevice) holds Secure Channel on
the same bus: nothing crashes, nothing becomes a credential, every frame that is not one
is counted, and afterwards the reader is online again and reads a real card.

The mix (fixed seed): random bytes; real frames captured from the reader, mutated (bit
flips, truncation, insertion, a changed length or address); and well-formed frames with a
valid CRC that a forger would send: plaintext card reads and key presses addressed to
the reader (Secure Channel must refuse them), random reply codes with random payloads.
10,000 of them go paced (2 KB bursts, each given up to 0.25 s to be taken by libosdp's
parser before the next), the other 90,000 as a flood (most of it is dropped by the
bounded receive buffer, counted). Runtime about 30 s on the 2-core test machine.
"""

from __future__ import annotations

import os
import queue
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from readers.osdp import OsdpConfig, OsdpReader
from readers.osdp_link import crc16
from testkit.osdp_pd import PdBus, wiegand_frame
from testkit.util import wait_for
from wire.keys import write_scbk_file

from ..edge.test_readers_osdp import Sink

SEED = 0x05D9_F022
N = 100_000
PACED = 10_000
PACE_SECONDS = 0.25
ADDRESS = 1


def frame(address: int, code: int, payload: bytes, *, seq: int = 1) -> bytes:
    """A well-formed OSDP frame with CRC, as an attacker on the bus would build it."""
    body = bytes([0x53, address, 0, 0, 0x04 | (seq & 3), code]) + payload
    n = len(body) + 2
    body = body[:2] + bytes([n & 0xFF, n >> 8]) + body[4:]
    c = crc16(body)
    return body + bytes([c & 0xFF, c >> 8])


def frames(rng: random.Random, captured: list[bytes]) -> Iterator[bytes]:
    card = wiegand_frame(26, 0x3A1F2C)
    forged = [
        frame(0x80 | ADDRESS, 0x50, bytes([0, 1, 26, 0]) + card),  # osdp_RAW, in the clear
        frame(0x80 | ADDRESS, 0x53, bytes([0, 5]) + b"1234#"),  # osdp_KEYPAD, in the clear
        frame(0x80 | ADDRESS, 0x51, bytes([0, 1, 26]) + card),  # osdp_FMT
    ]
    for _ in range(N):
        kind = rng.random()
        if kind < 0.25:
            yield rng.randbytes(rng.randint(1, 40))
        elif kind < 0.65 and captured:
            f = bytearray(rng.choice(captured))
            op = rng.randrange(5)
            if op == 0:
                for _ in range(rng.randint(1, 4)):
                    f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            elif op == 1:
                del f[rng.randrange(1, len(f)):]
            elif op == 2:
                f[rng.randrange(len(f))] = rng.randrange(256)
                f.insert(rng.randrange(len(f)), rng.randrange(256))
            elif op == 3:
                f[2] = rng.randrange(256)
            else:
                f[1] = rng.randrange(256)
            yield bytes(f)
        elif kind < 0.85:
            yield rng.choice(forged)
        else:
            yield frame(rng.choice([0x80 | ADDRESS, rng.randrange(256)]), rng.randrange(256),
                        rng.randbytes(rng.randint(0, 60)), seq=rng.randrange(4))


def _write_all(bus: PdBus, data: bytes) -> None:
    while data:
        n = bus.inject(data)
        data = data[n:]
        if not n:
            time.sleep(0.001)


@pytest.fixture
def bus() -> Iterator[PdBus]:
    b = PdBus()
    yield b
    b.close()


@pytest.mark.slow  # about 30 s
def test_osdp_fuzz_from_the_reader_side_crashes_nothing_and_grants_nothing(bus: PdBus, tmp_path: Path) -> None:
    key = os.urandom(16)
    pd = bus.add(ADDRESS, key)
    captured: list[bytes] = []
    bus.tap = captured  # the reader's own frames, to mutate
    sink = Sink()
    reader = OsdpReader(OsdpConfig(id="front-in", port=bus.port, baudrate=115200,
                                   address=ADDRESS, scbk_file=str(write_scbk_file(tmp_path / "k", key))), sink)
    reader.start()
    try:
        wait_for(lambda: reader.online and len(captured) >= 20, timeout=10, what="online, frames captured")
        bus.tap = None
        assert reader._bus is not None
        channel = reader._bus.channel
        assert channel is not None
        rng = random.Random(SEED)
        sent = 0
        burst = bytearray()
        for i, f in enumerate(frames(rng, captured)):
            sent += 1
            burst += f
            if i < PACED and len(burst) >= 2048:
                _write_all(bus, bytes(burst))
                burst.clear()
                # libosdp takes the burst while it waits for a reply: give it a moment to
                # (a reader it has given up on is restarted within a second; meanwhile the
                # next burst pushes the old one out of the bounded buffer, counted)
                deadline = time.monotonic() + PACE_SECONDS
                while channel.pending and time.monotonic() < deadline:
                    time.sleep(0.005)
            elif i >= PACED and len(burst) >= 4096:
                _write_all(bus, bytes(burst))
                burst.clear()
        _write_all(bus, bytes(burst))
        assert sent == N
        with pytest.raises(queue.Empty):  # no grant: nothing became a credential
            sink.reads.get(timeout=0.5)
        scanner = reader._bus.scanner
        counted = scanner.bad + scanner.junk + channel.overflow
        print(f"\nosdp fuzz: {N} frames, {bus.to_cp} bytes toward the control panel; scanner: "
              f"{scanner.frames} valid frames, {scanner.bad} bad headers, {scanner.junk} junk bytes; "
              f"receive buffer dropped {channel.overflow} bytes, libosdp's parser took "
              f"{channel.received - channel.overflow - channel.pending} bytes; "
              f"reader dropped {reader.stats.dropped} events")
        assert scanner.bad > 0 and scanner.junk > 0 and counted > 0
        assert reader.stats.reads == 0
        # Still alive and serving: back online, and a real card reads as itself.
        wait_for(lambda: reader.online, timeout=15, what="online again after the fuzz")
        pd.card(26, wiegand_frame(26, 0x0A0B0C))
        assert sink.reads.get(timeout=5) == ("front-in", "wiegand26:0A0B0C")
        assert sink.reads.empty()
    finally:
        reader.stop()
