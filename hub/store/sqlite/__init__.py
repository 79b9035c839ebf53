"""The hub's store on one SQLite file: ``SqliteStore``, opened through
``hub.store.open_store("sqlite:///path/hub.sqlite3")`` (or a plain path)."""

from __future__ import annotations

from ..api import Store
from ..url import sqlite_path
from .store import SqliteStore

__all__ = ["SqliteStore", "open_url"]


def open_url(url: str) -> Store:
    """Open (create, migrate) the SQLite store that ``url`` names (``hub.store.url``); here
    mypy checks that SqliteStore fulfils the Store interface."""
    return SqliteStore(sqlite_path(url))
