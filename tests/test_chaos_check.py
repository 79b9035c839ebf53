"""The chaos run's judges, judged: the decision re-check finds a decision that does not
follow from its cache version, the credential scan finds a leaked card in any spelling and
nothing in hashes, and the sequence check finds a lost event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from edge.outbox import Outbox
from hub.store import SqliteStore
from testkit.chaos_check import LogRow, check_decisions, check_sequences
from testkit.credscan import CredentialScanner
from wire import messages as m
from wire.creds import cred_hash

KEY = b"s" * 32
CARD = "em4100:0A00B1C2D3"
T = 1_800_000_000
VALID = 48 * 3600


def _entry(credential: str, ref: str | None, frm: int, until: int) -> m.Entry:
    return m.Entry(id=f"{ref}:{credential}", cred=cred_hash(KEY, credential), doors=["eingang"], from_=frm,
                   until=until, who="m-anna", ref=ref, room=None)


def _row(version: int, base: int, added: list[m.Entry], removed: list[str] = (), n: int | None = None) -> LogRow:
    return LogRow("s", version, base, T, n if n is not None else len(added), msgspec.json.encode(added).decode(),
                  "[]", json.dumps(list(removed)))


def _event(type_: str, reason: str, version: int | None, ts: float = T + 10, synced: bool = True,
           **kw: Any) -> dict[str, Any]:
    return {"type": type_, "seq": 1, "door": "eingang", "cred": cred_hash(KEY, CARD), "reason": reason,
            "cache_version": version, "ts": ts, "clock_synced": synced, **kw}


ROWS = [_row(1, 0, [_entry(CARD, "bk-1", T, T + 3600)]), _row(2, 1, [], ["bk-1:" + CARD], n=0)]
ROOMS = {"s": {"eingang": None}}


def check(*events: dict[str, Any]) -> Any:
    return check_decisions({"s": list(events)}, lambda site: ROWS, valid_seconds=VALID, door_rooms=ROOMS)


def test_decisions_that_follow_from_their_cache_version_pass() -> None:
    res = check(_event("access.granted", "booking", 1, who="m-anna", ref="bk-1"),
                _event("access.denied", "unknown_credential", 2),  # version 2 removed the booking
                _event("access.denied", "clock_untrusted", 1, ts=T - 5, synced=False),
                _event("access.denied", "outside_window", 1, ts=T + 7200),
                _event("access.denied", "unknown_credential", None))
    assert (res.checked, res.mismatches, res.unverifiable) == (5, 0, 0)


def test_a_decision_against_its_cache_version_is_a_mismatch() -> None:
    res = check(_event("access.granted", "booking", 2, who="m-anna", ref="bk-1"),  # removed in 2: no grant
                _event("access.denied", "unknown_credential", 1),  # 1 had it
                _event("access.granted", "booking", 1, who="m-bert", ref="bk-1"))  # not who the entry names
    assert res.mismatches == 3


def test_a_trusted_clock_behind_the_signed_time_is_a_mismatch() -> None:
    res = check(_event("access.denied", "outside_window", 1, ts=T - 5, synced=True))
    assert (res.mismatches, res.clock_violations) == (1, 1)


def test_a_version_the_hub_never_issued_or_a_broken_log_is_unverifiable() -> None:
    assert check(_event("access.denied", "unknown_credential", 9)).unverifiable == 1
    broken = [ROWS[0], _row(3, 2, [])]
    res = check_decisions({"s": [_event("access.denied", "unknown_credential", 3)]}, lambda site: broken,
                          valid_seconds=VALID, door_rooms=ROOMS)
    assert res.unverifiable == 1 and res.chain_breaks


def test_the_scan_finds_a_card_in_every_spelling_and_nothing_in_hashes() -> None:
    scan = CredentialScanner([CARD, "pin:048213370011", "iso14443a:04A1B2C3D4E5F6"])
    assert scan.hits(b"denied em4100:0A00B1C2D3 at eingang") == ["string", "value"]
    assert scan.hits(b'{"card": "0a00b1c2d3"}') == ["value"]
    assert scan.hits(b"pin 048213370011 entered") == ["value"]
    assert scan.hits(b"uid=04a1b2c3d4e5f6;") == ["value"]
    assert scan.hits(cred_hash(KEY, CARD).encode() + b" " + b"0a00b1c2d3" * 3) == []
    assert scan.hits(b"ts 1800000000.123456 seq 12 em4100:0A00B1C2D4") == []


def test_the_sequence_check_finds_an_event_the_hub_does_not_have(tmp_path: Path) -> None:
    data = tmp_path / "site"
    data.mkdir()
    store = SqliteStore(tmp_path / "hub.sqlite3")
    try:
        with Outbox(data / "outbox.db", "s", "b") as ob:
            raws = [ob.emit("door.opened", ts=T, clock_synced=True, door="eingang") for _ in range(3)]
            rows = [(i + 1, f"e{i}", "door.opened", float(T), r.decode()) for i, r in enumerate(raws)]
            store.store_events("s", rows, stream=ob.stream)
            ob.ack(3, ob.stream)
            assert check_sequences(tmp_path / "hub.sqlite3", {"s": data})["s"]["ok"]
            ob.emit("door.opened", ts=T, clock_synced=True, door="eingang")  # emitted, never stored
            got = check_sequences(tmp_path / "hub.sqlite3", {"s": data})["s"]
            assert not got["ok"] and (got["emitted"], got["stored"]) == (4, 3)
    finally:
        store.close()


def test_the_sequence_check_counts_a_reinstalled_sites_stream_and_any_gap_in_an_old_one(tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "site"
    data.mkdir()
    store = SqliteStore(tmp_path / "hub.sqlite3")
    try:
        for n in (4, 2):  # the site, then the site reinstalled (its outbox wiped): seqs 1.. again
            with Outbox(data / "outbox.db", "s", "b") as ob:
                raws = [ob.emit("door.opened", ts=T, clock_synced=True, door="eingang") for _ in range(n)]
                store.store_events("s", [(i + 1, f"e{i}", "door.opened", float(T), r.decode())
                                         for i, r in enumerate(raws)], stream=ob.stream)
                ob.ack(n, ob.stream)
                old = ob.stream
            if n == 4:
                shutil.rmtree(data)
                data.mkdir()
        got = check_sequences(tmp_path / "hub.sqlite3", {"s": data})["s"]
        assert got["ok"] and (got["emitted"], got["stored"], got["max_seq"]) == (2, 2, 2)
        first = next(s.stream for s in store.event_streams("s") if s.stream != old)
        store.store_events("s", [(6, "late", "door.opened", float(T), "{}")], stream=first)  # seq 5 missing
        got = check_sequences(tmp_path / "hub.sqlite3", {"s": data})["s"]
        assert not got["ok"] and got["other_stream_gaps"] == 1
    finally:
        store.close()
