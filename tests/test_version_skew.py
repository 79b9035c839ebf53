"""Hubs and sites one version apart (docs/operations.md, upgrading): a site ignores the fields
of a newer hub's caches it does not know and applies them; a hub takes a newer site's
Status and cache ack with fields it does not know. (A newer site's unknown event *types*:
tests/hub/test_ingest_streams.py, stored, counted and acknowledged.)"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cache import CacheStore
from edge.trust import Trust, apply_envelope
from hub.store import open_store
from wire import envelope
from wire import messages as m
from wire.keys import public_key_b64
from wire.topics import Kind

SITE = "minheim"


def test_a_site_applies_caches_with_fields_it_does_not_know(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    entry = {"id": "e1", "cred": "a" * 32, "doors": ["front"], "from": None, "until": None, "who": "w1",
             "ref": None, "room": None, "priority": 3, "tags": ["new"]}
    full = {"type": "cache.full", "site": SITE, "version": 5, "issued_at": 1_700_000_000,
            "expires_at": 1_700_086_400, "entries": [entry], "region": {"name": "Mosel"}, "format": 2}
    delta = {"type": "cache.delta", "site": SITE, "version": 6, "base_version": 5, "issued_at": 1_700_000_100,
             "expires_at": 1_700_086_500, "upsert": [{**entry, "id": "e2", "cred": "b" * 32}], "remove": [],
             "compression_hint": "none"}
    with CacheStore(tmp_path / "cache.db") as store:
        trust = Trust(public_key_b64(key))
        for kind, body in ((Kind.CACHE, full), (Kind.CACHE_DELTA, delta)):
            held = [envelope.sign(json.dumps(body).encode(), key)]
            assert apply_envelope(store, trust, SITE, kind, held, limit=1 << 20) == (body["version"], None)
        assert [e.id for e in store.entries()] == ["e1", "e2"]


def test_a_hub_takes_a_newer_sites_status_and_acks(tmp_path: Path) -> None:
    status = {"state": "online", "ts": 1.0, "boot": "b", "software": "9.0", "cache_version": 3,
              "cache_expires_at": None, "clock_synced": True, "outbox_pending": 0, "lockdown": False,
              "stream": "0" * 32, "storage_error": None, "battery": {"volts": 12.1}, "uptime": 99}
    st = m.decode(json.dumps(status).encode(), m.Status)
    with open_store(tmp_path / "hub.sqlite3") as store:
        store.upsert_site(SITE, "Minheim", ["front"])
        state = store.record_status(SITE, st, 2.0)
        assert (state.software, state.cache_version) == ("9.0", 3)
        assert json.loads(state.status or "{}")["software"] == "9.0"
    ack = m.decode(b'{"version": 3, "ok": true, "error": null, "ts": 1.0, "applied_ms": 12}', m.CacheAck)
    assert ack.ok and ack.version == 3
