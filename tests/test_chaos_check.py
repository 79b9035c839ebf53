"""The chaos run's judges, judged: the decision re-check finds a decision that does not
follow from its cache version, the credential scan finds a leaked card in any spelling and
nothing in hashes, and the sequence check finds a lost event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from edge.outbox import Outbox
from hub.store import open_store
from testkit.chaos_check import LogRow, check_decisions
from testkit.chaos_events import check_sequences
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


def test_the_scan_finds_a_35_or_37_bit_card_string() -> None:
    scan = CredentialScanner(["bits37:8000800010"])
    assert scan.hits(b"read bits37:8000800010 at eingang") == ["string", "value"]
    assert scan.hits(b"read bits37:8000800011") == []


def test_the_scan_finds_words_in_any_case_and_nothing_else() -> None:
    scan = CredentialScanner([CARD], words=["Anna Beispiel", "anna@example.org", "Jörg Öztürk", ""])
    assert scan.hits(b'{"name": "ANNA BEISPIEL", "email": "Anna@Example.org"}') == ["word", "word"]
    assert scan.hits("JÖRG ÖZTÜRK".encode()) == ["word"]
    assert scan.hits(b'{"name": "Anna Beispielhaft"}') == ["word"]  # substrings count
    assert scan.hits(b'{"name": "Anna", "email": "anna@example.com"}') == []


def test_the_sequence_check_finds_an_event_the_hub_does_not_have(tmp_path: Path) -> None:
    data = tmp_path / "site"
    data.mkdir()
    store = open_store(tmp_path / "hub.sqlite3")
    try:
        with Outbox(data / "outbox.db", "s", "b") as ob:
            raws = [ob.emit("door.opened", ts=T, clock_synced=True, door="eingang") for _ in range(3)]
            rows = [(i + 1, json.loads(r)["id"], "door.opened", float(T), r.decode()) for i, r in enumerate(raws)]
            store.store_events("s", rows, stream=ob.stream)
            ob.ack(3, ob.stream)
            assert check_sequences(tmp_path / "hub.sqlite3", {"s": data})["s"]["ok"]
            ob.emit("door.opened", ts=T, clock_synced=True, door="eingang")  # emitted, never stored
            got = check_sequences(tmp_path / "hub.sqlite3", {"s": data})["s"]
            assert not got["ok"] and (got["emitted"], got["stored"]) == (4, 3)
    finally:
        store.close()


# --- streams: a reinstalled site --------------------------------------------------------------------


def _hub_db(path: Path) -> Path:
    """A hub store's tables as the sequence check reads them, keyed by nothing: so that it
    can hold what a hub storing per (site, stream, seq) holds, or what one per (site, seq) does."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (site_id, seq, id, type, ts, received_at, payload)")
        conn.execute("CREATE TABLE site_state (site_id, acked_upto, max_seq, gaps)")
        conn.execute("CREATE TABLE cache_sites (site_id, version)")
    return path


def _outbox(path: Path, n: int, stream: str) -> list[dict[str, Any]]:
    """An outbox of ``n`` acknowledged events of ``stream`` (as a site with streams writes)."""
    import sqlite3

    with Outbox(path, "s", "b") as ob:
        for _ in range(n):
            ob.emit("door.opened", ts=T, clock_synced=True, door="eingang")
        ob.ack(n)
    out = []
    with sqlite3.connect(path) as conn:
        for seq, data in conn.execute("SELECT seq, data FROM events ORDER BY seq").fetchall():
            doc = {**json.loads(data), "stream": stream}
            conn.execute("UPDATE events SET data = ? WHERE seq = ?", (json.dumps(doc).encode(), seq))
            out.append(doc)
    return out


def _store(hub: Path, events: list[dict[str, Any]]) -> None:
    import sqlite3

    with sqlite3.connect(hub) as conn:
        conn.executemany("INSERT INTO events VALUES ('s', ?, ?, ?, ?, ?, ?)",
                         [(e["seq"], e["id"], e["type"], e["ts"], e["ts"], json.dumps(e)) for e in events])


def test_the_sequence_check_holds_both_streams_of_a_reinstalled_site_to_account(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "site").mkdir()
    old = _outbox(tmp_path / "old" / "outbox.db", 3, "a" * 32)
    new = _outbox(tmp_path / "site" / "outbox.db", 2, "b" * 32)
    before = {"s": [(tmp_path / "old" / "outbox.db", 3)]}
    hub = _hub_db(tmp_path / "hub.sqlite3")
    _store(hub, old + new)  # a hub that keeps every stream
    got = check_sequences(hub, {"s": tmp_path / "site"}, before)["s"]
    assert got["ok"] and got["streams"] == 2 and got["missing"] == 0

    hub2 = _hub_db(tmp_path / "hub2.sqlite3")
    _store(hub2, old)  # a hub that took the new stream's seq 1, 2 for duplicates of the old one's
    got = check_sequences(hub2, {"s": tmp_path / "site"}, before)["s"]
    assert not got["ok"] and got["missing"] == 2

    hub3 = _hub_db(tmp_path / "hub3.sqlite3")
    _store(hub3, old[1:] + new)  # an acknowledged event of the old stream missing
    got = check_sequences(hub3, {"s": tmp_path / "site"}, before)["s"]
    assert not got["ok"] and got["missing_before_reinstall"] == 1


# --- the rogue site's verdicts ------------------------------------------------------------------------


def _report(**rogue: Any) -> dict[str, Any]:
    """A chaos report in which every rogue attack was done and achieved nothing."""
    hooks = [{"booking": "bk-webhook-000", "site": "s", "confirm_status": 200, "cancel_status": 200,
              "replay_statuses": [401, 401], "hub_status": "cancelled", "site_cache_entries": 0}]
    g = {"hub_disconnects": 3, "rogue_logins_as_others": 0, "share_foreign_messages": 0,
         "store": {"largest_value": 40000, "where": "cache_entries.entry", "store_bytes": 10**7},
         "occupancy_row_max": 300, "checkin_refs": ["bk-x-1"], "checkins_forwarded": [], "webhooks": hooks,
         "reinstalls": [{"site": "s", "check": {"ok": True, "missing": 0, "missing_before_reinstall": 0}}],
         "unknown_seq": 4, "emitted": 8, "acked": 8}
    g.update(rogue)
    counts = {"broker_kill": 3, "rogue_takeover_hub": 2, "rogue_takeover_site": 2, "rogue_share_hijack": 1,
              "rogue_integers": 1, "rogue_payloads": 1, "rogue_foreign_checkins": 1, "rogue_unknown_event": 1,
              "webhook_pushed": 2, "webhook_replayed": 2, "site_reinstall": 1}
    return {"sites": 2, "events": {"lost": 0, "sites_ok": 2}, "caches": {"not_converged": {}}, "crashes": [],
            "faults": {"counts": counts}, "rogue": g}


def test_a_rogue_that_achieved_nothing_passes_every_rogue_verdict() -> None:
    from testkit.chaos_rogue_check import verdicts

    got = verdicts(_report())
    assert got and all(got.values()), got


def test_each_rogue_success_fails_its_own_verdict() -> None:
    from testkit.chaos_rogue_check import verdicts

    cases = {
        "rogue_checkins_not_forwarded": {"checkins_forwarded": ["bk-x-1"]},  # the platform got the check-in
        "rogue_takeover_kicked_no_one": {"rogue_logins_as_others": 1},
        "rogue_share_hijack_got_nothing": {"share_foreign_messages": 5},
        "rogue_payloads_bounded": {"store": {"largest_value": 20 * 1024 * 1024, "where": "events.payload"}},
        "rogue_stream_not_held_by_unknown_event": {"acked": 3},
        "replayed_webhooks_changed_nothing": {"webhooks": [{"booking": "b", "site": "s", "confirm_status": 200,
                                                            "cancel_status": 200, "replay_statuses": [200],
                                                            "hub_status": "confirmed", "site_cache_entries": 2}]},
        "reinstalled_site_lost_nothing": {"reinstalls": [{"site": "s", "check": {"ok": False, "missing": 2}}]},
    }
    for verdict, change in cases.items():
        got = verdicts(_report(**change))
        assert not got[verdict], verdict
        assert all(v for k, v in got.items() if k not in (verdict, "webhooks_accepted")), (verdict, got)
    assert not verdicts(_report(hub_disconnects=9))["rogue_takeover_kicked_no_one"]  # more than broker kills
    refused = [{**_report()["rogue"]["webhooks"][0], "confirm_status": 401}]
    assert not verdicts(_report(webhooks=refused))["webhooks_accepted"]


def test_an_attack_that_never_happened_passes_no_verdict() -> None:
    from testkit.chaos_rogue_check import verdicts

    rep = _report()
    rep["faults"]["counts"] = {"broker_kill": 3}
    got = verdicts(rep)
    assert not any(got.values()), got
    lost = _report()
    lost["events"]["lost"] = 1  # the others must be whole for the integer and payload verdicts
    got = verdicts(lost)
    assert not got["rogue_integers_left_others_whole"] and not got["rogue_payloads_bounded"]


def test_the_broker_log_shows_a_rogue_login_under_someone_elses_client_id(tmp_path: Path) -> None:
    from testkit.chaos_rogue_check import logins_as

    log = tmp_path / "mosquitto.log"
    log.write_text(
        "09:36:25: New client connected from 127.0.0.1:53297 as torwart-hub-x (p5, c1, k60, u'hub').\n"
        "09:36:25: Client torwart-hub-x already connected, closing old connection.\n"
        "09:36:25: New client connected from 127.0.0.1:40615 as torwart-hub-x (p5, c1, k30, u'site-rogue').\n"
        "09:36:26: New client connected from 127.0.0.1:47833 as rogue-site-1a2b3c (p5, c1, k30, u'site-rogue').\n"
        "09:36:27: New client connected from 127.0.0.1:47834 as torwart-site-s (p5, c0, k30, u's').\n")
    ids = {"torwart-hub-x", "torwart-site-s"}
    assert logins_as(log, "site-rogue", ids) == 1
    assert logins_as(log, "hub", ids) == 1 and logins_as(log, "site-rogue", {"torwart-site-s"}) == 0


def test_the_largest_value_is_found_in_any_table(tmp_path: Path) -> None:
    import sqlite3

    from testkit.chaos_rogue_check import largest_value, verdicts

    db = tmp_path / "hub.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (site_id, payload)")
        conn.execute("CREATE TABLE kept_aside (raw BLOB)")  # wherever a hub may keep what it refused
        conn.execute("INSERT INTO events VALUES ('s', ?)", ("x" * 300,))
        conn.execute("INSERT INTO kept_aside VALUES (?)", (b"A" * 3_000_000,))
    got = largest_value(db)
    assert (got["largest_value"], got["where"]) == (3_000_000, "kept_aside.raw")
    assert not verdicts(_report(store=got))["rogue_payloads_bounded"]
    assert not verdicts(_report(occupancy_row_max=4_000_000))["rogue_payloads_bounded"]  # seen during the run
