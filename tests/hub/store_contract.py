"""The store contract's fixtures: every test that takes ``store`` or ``store_url`` runs once
per store implementation in ``STORE_URLS``.

- ``store_url``: the URL of a fresh, empty store; open it (``hub.store.open_store``) as
  often as the test needs, e.g. to reopen it or to open one store per thread.
- ``store``: a store opened on ``store_url`` with ``SITES`` synced, closed afterwards.

Adding an implementation to the suite is one entry in ``STORE_URLS`` (for PostgreSQL: the
URL of a fresh database on a test server). Test modules import the fixtures they use:
``from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401``.
What only SQLite promises (its file, WAL, modes, schema migrations) is tested in
tests/hub/test_store_sqlite.py instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.store import Store, open_store
from tests.hub._bookings import NOW


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'hub.sqlite3'}"


#: Implementation → the URL of a fresh, empty store of it (in a test's own ``tmp_path``).
STORE_URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": sqlite_url,
}


@dataclass(frozen=True)
class Room:
    id: str
    doors: tuple[str, ...]
    resources: tuple[str, ...]
    name: str = ""
    capacity: int | None = None


@dataclass(frozen=True)
class Site:
    id: str
    doors: tuple[str, ...]
    rooms: tuple[Room, ...]
    name: str = ""


SITES = [
    Site("minheim", ("main", "cowork"), (Room("cowork", ("main", "cowork"), ("res-a", "res-b")),)),
    Site("altdorf", ("door",), (Room("hall", ("door",), ("res-c",)),)),
]


@pytest.fixture(name="store_url", params=sorted(STORE_URLS))
def store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return STORE_URLS[request.param](tmp_path)


@pytest.fixture(name="store")
def store_fixture(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.sync_sites(SITES)
    yield s
    s.close()


def events(seqs: list[int], site: str = "minheim") -> list[tuple[int, str, str, float, str]]:
    return [(s, f"ev-{s}", "door.opened", float(NOW + s), json.dumps({"seq": s, "site": site})) for s in seqs]
