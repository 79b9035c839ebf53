"""A captured booking webhook is good once: the signature covers a timestamp, a push more
than 300 s from the hub's clock or with a signature the hub accepted before is refused
(401), also after a hub restart, and no booking version undoes a later one or, with the
same ``updated_at``, a cancellation (PROTOCOL.md §5)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hub.booking.base import PlatformBooking
from hub.core import Hub
from hub.errors import HubError
from hub.store import open_store
from hub.store.sqlite import schema as store_schema
from testkit.booking_fake import BookingPlatform, iso, post_webhook, push_webhook, signed_webhook
from testkit.broker import Mosquitto
from testkit.county import County, HubThread, make_county
from tests.hub.store_contract import store_url_fixture  # noqa: F401


def _booking(county: County, status: str, updated_at: dt.datetime) -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    return {"id": "bk-replay", "resource_id": county.resource("minheim"), "member_id": "m-17",
            "start": iso(start), "end": iso(start + dt.timedelta(hours=2)), "status": status,
            "updated_at": iso(updated_at), "pin": "4821"}


def _status(hub: HubThread, booking_id: str = "bk-replay") -> str | None:
    b = hub.service.call(lambda: hub.service.store.get_booking(booking_id))
    return None if b is None else b.status


def test_a_replayed_webhook_is_refused_and_cannot_roll_a_cancellation_back(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
        url, secret = county.http_url, county.webhook_secret
        # Two versions within one second: confirmed, then cancelled 400 ms later.
        t = dt.datetime.now(dt.UTC).replace(microsecond=100_000)
        confirmed = signed_webhook(_booking(county, "confirmed", t), secret)
        cancelled = signed_webhook(_booking(county, "cancelled", t + dt.timedelta(milliseconds=400)), secret)
        with HubThread(county) as hub:
            assert post_webhook(url, *confirmed) == 200
            assert _status(hub) == "confirmed"
            assert post_webhook(url, *cancelled) == 200
            assert _status(hub) == "cancelled"
            # The captured confirmation, replayed: refused, the cancellation stands.
            assert post_webhook(url, *confirmed) == 401
            assert post_webhook(url, *cancelled) == 401  # the same signature twice
            assert _status(hub) == "cancelled"
            # The earlier version, signed afresh (as a platform retrying late would): older
            # at full precision, so it is accepted but ignored.
            fresh = int(confirmed[1]["X-Torwart-Timestamp"]) - 1
            assert push_webhook(url, _booking(county, "confirmed", t), secret, timestamp=fresh) == 200
            assert _status(hub) == "cancelled"
            # An equal updated_at with other content does not undo the cancellation either.
            assert push_webhook(url, _booking(county, "confirmed", t + dt.timedelta(milliseconds=400)), secret,
                                timestamp=fresh) == 200
            assert _status(hub) == "cancelled"
            # A correctly signed push from more than five minutes ago (or ahead) is refused.
            now = int(time.time())
            later = _booking(county, "confirmed", t + dt.timedelta(seconds=1))
            assert push_webhook(url, later, secret, timestamp=now - 301) == 401
            assert push_webhook(url, later, secret, timestamp=now + 301) == 401
            assert _status(hub) == "cancelled"
        with HubThread(county) as hub:  # restarted: the seen signatures are still known
            assert post_webhook(url, *confirmed) == 401
            assert post_webhook(url, *cancelled) == 401
            assert _status(hub) == "cancelled"
            # A genuinely newer version still gets through.
            assert push_webhook(url, later, secret) == 200
            assert _status(hub) == "confirmed"


def test_a_push_that_is_not_signed_over_its_timestamp_is_refused(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
        booking = _booking(county, "confirmed", dt.datetime.now(dt.UTC))
        body, headers = signed_webhook(booking, county.webhook_secret)
        with HubThread(county) as hub:
            # The signature of the body alone (the old contract) is not accepted.
            old = {"Content-Type": "application/json",
                   "X-Torwart-Signature": "sha256=" + hmac.new(county.webhook_secret, body, hashlib.sha256).hexdigest()}
            assert post_webhook(county.http_url, body, old) == 401
            assert post_webhook(county.http_url, body, {**old, "X-Torwart-Timestamp": headers["X-Torwart-Timestamp"]}) \
                == 401
            # Another timestamp than the one signed.
            moved = {**headers, "X-Torwart-Timestamp": str(int(headers["X-Torwart-Timestamp"]) - 1)}
            assert post_webhook(county.http_url, body, moved) == 401
            assert _status(hub) is None
            assert post_webhook(county.http_url, body, headers) == 200
            assert _status(hub) == "confirmed"


# A hub process that takes a push and dies (power cut, SIGKILL) after remembering its
# signature and before storing its booking: os._exit in place of storing the booking.
_DIE_MID_PUSH = """
import os, sys, time
from hub import config
from hub.booking.webhook import verify_and_parse
from hub.core import open_hub
from hub.sync import BookingSync
cfg_path, secret, ts, sig = sys.argv[1:5]
body = sys.stdin.buffer.read()
push = verify_and_parse(body, sig, ts, bytes.fromhex(secret), now=time.time())
BookingSync.apply_webhook = lambda *a, **k: os._exit(9)
with open_hub(config.load(cfg_path)) as hub:
    hub.apply_push(push)
"""


def test_a_push_whose_hub_dies_before_storing_it_is_applied_when_the_platform_sends_it_again(
    tmp_path: Path,
) -> None:
    # Remembering the signature and storing the booking are one transaction: had the
    # signature outlived the process alone, the platform's retry would be refused as a
    # replay and the booking (a cancellation, say) missed until the next complete sync.
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
        body, headers = signed_webhook(_booking(county, "cancelled", dt.datetime.now(dt.UTC)), county.webhook_secret)
        died = subprocess.run(
            [sys.executable, "-c", _DIE_MID_PUSH, str(county.hub_config_path), county.webhook_secret.hex(),
             headers["X-Torwart-Timestamp"], headers["X-Torwart-Signature"]],
            input=body, capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2], check=False)
        assert died.returncode == 9, died.stderr.decode()
        with HubThread(county) as hub:
            assert _status(hub) is None
            assert post_webhook(county.http_url, body, headers) == 200  # the very same request, once more
            assert _status(hub) == "cancelled"
            assert post_webhook(county.http_url, body, headers) == 401  # and now it is a replay


def test_a_push_stored_whose_caches_then_fail_is_answered_as_applied(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The booking and its signature are committed; bringing out the caches fails after that
    # (the signing key unreadable, the store gone). Answering "send it again" would make the
    # platform's retry a replay (401): the push is answered as applied, and its sites get
    # versions at their next rebuild.
    with Mosquitto(tmp_path / "broker") as broker, BookingPlatform() as platform:
        county = make_county(tmp_path, broker, platform, ("minheim",))
        body, headers = signed_webhook(_booking(county, "cancelled", dt.datetime.now(dt.UTC)), county.webhook_secret)
        with HubThread(county) as hub:
            def failing(self: Hub, sites: object) -> dict[str, int]:
                raise HubError("the signing key cannot be read")

            monkeypatch.setattr(Hub, "changed", failing)
            assert post_webhook(county.http_url, body, headers) == 200
            assert _status(hub) == "cancelled"
            monkeypatch.undo()
            assert post_webhook(county.http_url, body, headers) == 401


def _pb(status: str, updated_at: float, pin: str | None = None) -> PlatformBooking:
    return PlatformBooking(id="b", resource_id="res", member_id="m", start=100, end=200, status=status,  # type: ignore[arg-type]
                           updated_at=updated_at, pin=pin, source="rest")


def test_booking_versions_are_compared_at_full_precision_and_a_tie_never_undoes_a_cancellation(store_url: str) -> None:
    t = 1_790_000_000.25
    with open_store(store_url) as store:
        store.upsert_bookings([_pb("cancelled", t + 0.5)])
        assert store.upsert_bookings([_pb("confirmed", t)]).changed == []  # same second, earlier
        assert store.get_booking("b").status == "cancelled"  # type: ignore[union-attr]
        assert store.get_booking("b").updated_at == t + 0.5  # type: ignore[union-attr]
        assert store.upsert_bookings([_pb("confirmed", t + 0.5, pin="1234")]).changed == []  # a tie
        assert store.get_booking("b").status == "cancelled"  # type: ignore[union-attr]
        # Within one batch too: the cancellation wins the tie, whatever the order.
        store.upsert_bookings([_pb("cancelled", t + 2), _pb("confirmed", t + 2)])
        assert store.get_booking("b").status == "cancelled"  # type: ignore[union-attr]
        assert store.upsert_bookings([_pb("confirmed", t + 2.000001)]).changed == ["b"]  # a microsecond later
        assert store.get_booking("b").status == "confirmed"  # type: ignore[union-attr]


def test_bookings_stored_in_whole_seconds_keep_their_versions_through_the_migration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upto = store_schema.MIGRATIONS.index(store_schema._booking_versions_at_full_precision)
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS[:upto])
    with open_store(tmp_path / "hub.sqlite3") as old:
        old.upsert_bookings([_pb("cancelled", 1_790_000_000)])
    monkeypatch.undo()
    with open_store(tmp_path / "hub.sqlite3") as store:
        assert store.schema_version() == len(store_schema.MIGRATIONS)
        assert store.get_booking("b").updated_at == 1_790_000_000  # type: ignore[union-attr]
        store.upsert_bookings([_pb("confirmed", 1_790_000_000.5)])
        assert store.get_booking("b").status == "confirmed"  # type: ignore[union-attr]
        assert store.remember_webhook_signature("ab" * 32, ts=1_790_000_000, at=1_790_000_000.0, forget_before=0)
        assert not store.remember_webhook_signature("ab" * 32, ts=1_790_000_000, at=1_790_000_001.0, forget_before=0)
        # Outside the replay window the timestamp check refuses it anyway: forgotten.
        assert store.remember_webhook_signature("cd" * 32, ts=1_790_000_400, at=1_790_000_400.0,
                                                forget_before=1_790_000_001)
        assert store.remember_webhook_signature("ab" * 32, ts=1_790_000_000, at=1_790_000_400.0,
                                                forget_before=1_790_000_001)
