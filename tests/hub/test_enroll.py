"""Pending enrollments in the hub's store and the handler that opens sealed reads: each
enrollment finishes once, late or altered reads and cards of other members enroll nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hub.enroll import EnrollHandler
from hub.store import Store, open_store
from hub.store.sqlite.schema import MIGRATIONS
from wire import messages as m
from wire.seal import seal

CARD = "em4100:0A00B1C2D3"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "hub.sqlite3") as s:
        s.upsert_site("minheim", "Minheim", ["eingang"])
        s.add_member("m-1", "Anna")
        s.add_member("m-2", "Bert")
        yield s


def read(command: str, sealed: str, reader: str = "eingang-rfid") -> m.EnrollRead:
    return m.EnrollRead(id=uuid.uuid4().hex, site="minheim", seq=1, boot="b", ts=0.0, clock_synced=True,
                        reader=reader, command=command, sealed=sealed)


def test_the_schema_has_the_enrollments_migration(store: Store) -> None:
    assert store.schema_version() == len(MIGRATIONS) >= 3


def test_an_enrollment_finishes_once_and_a_second_finisher_only_reads_the_outcome(
    store: Store, tmp_path: Path
) -> None:
    store.add_enrollment("c1", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=1000)
    with open_store(tmp_path / "hub.sqlite3") as other:  # the running hub's own connection
        row, mine = store.finish_enrollment("c1", "minheim", CARD, now=10)
        assert mine and row.status == "enrolled" and row.credential_id is not None
        again, mine = other.finish_enrollment("c1", "minheim", CARD, now=11)
        assert not mine and again == row
    assert len(store.credentials_of("m-1")) == 1
    with pytest.raises(KeyError):
        store.finish_enrollment("c1", "altdorf", CARD, now=12)  # another site cannot finish it


def test_late_reads_and_other_members_cards_enroll_nothing(store: Store) -> None:
    store.add_enrollment("late", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=100)
    row, _ = store.finish_enrollment("late", "minheim", CARD, now=101)
    assert row.status == "expired" and store.owner_of_credential(CARD) is None
    store.add_credential("m-2", CARD)
    store.add_enrollment("taken", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=1000)
    row, _ = store.finish_enrollment("taken", "minheim", CARD, now=10)
    assert (row.status, row.detail) == ("conflict", "m-2") and store.owner_of_credential(CARD) == "m-2"
    store.add_enrollment("gone", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=1000)
    assert store.close_enrollment("gone", "cancelled", "timed out", now=5).status == "cancelled"  # type: ignore[union-attr]
    row, mine = store.finish_enrollment("gone", "minheim", "em4100:0A00B1C2FF", now=6)
    assert not mine and row.status == "cancelled" and store.owner_of_credential("em4100:0A00B1C2FF") is None
    store.add_enrollment("new", "minheim", "m-1", "eingang-rfid", created_at=500, expires_at=1000)
    assert store.purge_enrollments(created_before=100) == 3 and store.get_enrollment("new") is not None


def test_the_handler_refuses_altered_seals_wrong_readers_and_unknown_commands(store: Store) -> None:
    key = X25519PrivateKey.generate()
    handler = EnrollHandler(store, key)
    store.add_enrollment("c1", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=10**10)
    sealed = seal(CARD, key.public_key(), "minheim")
    assert handler.on_read("minheim", read("nobody-asked", sealed), 1.0) is None
    assert handler.on_read("altdorf", read("c1", sealed), 1.0) is None  # not this site's enrollment
    other_site = seal(CARD, key.public_key(), "altdorf")  # replayed from another site
    out = handler.on_read("minheim", read("c1", other_site), 1.0)
    assert out is not None and out.enrollment.status == "refused" and out.shown is None
    assert "altered in transit" in (out.enrollment.detail or "")
    store.add_enrollment("c2", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=10**10)
    out = handler.on_read("minheim", read("c2", sealed, reader="hinten-rfid"), 1.0)
    assert out is not None and out.enrollment.status == "refused"
    store.add_enrollment("c3", "minheim", "m-1", "eingang-rfid", created_at=0, expires_at=10**10)
    out = handler.on_read("minheim", read("c3", sealed), 1.0)
    assert out is not None and out.mine and out.enrollment.status == "enrolled"
    assert out.shown == "EM4100 card, printed number 0011649747 (or 177,49875)"
    repeat = handler.on_read("minheim", read("c3", sealed), 2.0)  # the same read once more
    assert repeat is not None and not repeat.mine and len(store.credentials_of("m-1")) == 1
