"""The store contract's fixtures: every test that takes ``store`` or ``store_url`` runs once
per store implementation in ``STORE_URLS``.

- ``store_url``: the URL of a fresh, empty store; open it (``hub.store.open_store``) as
  often as the test needs, e.g. to reopen it or to open one store per thread.
- ``store``: a store opened on ``store_url`` with ``SITES`` synced, closed afterwards.

Adding an implementation to the suite is one entry in ``STORE_URLS``. PostgreSQL's is a
fresh database on the session's test server (``postgres_server`` in tests/conftest.py),
copied from a template that has the schema applied, so each test costs one CREATE DATABASE.
Test modules import the fixtures they use:
``from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401``.
What only SQLite promises (its file, WAL, modes, schema migrations) is tested in
tests/hub/test_store_sqlite.py instead; what only PostgreSQL promises (concurrent writers
on several connections, migrations racing, a server restart) in tests/hub/test_store_postgres.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.store import Store, open_store
from testkit.postgres import fresh_store_url
from tests.hub._bookings import NOW


def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'hub.sqlite3'}"


def postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with the store's schema on the session's PostgreSQL (the URL holds
    the generated password)."""
    return fresh_store_url(request.getfixturevalue("postgres_server"))


#: Implementation → the URL of a fresh, empty store of it (for SQLite: in the test's own
#: ``tmp_path``; for PostgreSQL: a new database on the session's server).
STORE_URLS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": sqlite_url,
    "postgres": postgres_url,
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
    return STORE_URLS[request.param](request, tmp_path)


@pytest.fixture(name="store")
def store_fixture(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.sync_sites(SITES)
    yield s
    s.close()


def events(seqs: list[int], site: str = "minheim") -> list[tuple[int, str, str, float, str]]:
    return [(s, f"ev-{s}", "door.opened", float(NOW + s), json.dumps({"seq": s, "site": site})) for s in seqs]
