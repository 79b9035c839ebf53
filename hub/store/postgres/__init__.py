"""The hub's store on PostgreSQL: ``PostgresStore``, opened through
``hub.store.open_store("postgresql://USER@HOST:PORT/DBNAME")`` (``connect`` says what the
URL may hold). Needs psycopg 3 (the ``postgres`` extra)."""

from __future__ import annotations

from ..api import Store
from .base import StoreUnavailable
from .store import PostgresStore

__all__ = ["PostgresStore", "StoreUnavailable", "open_url"]


def open_url(url: str) -> Store:
    """Open (migrate) the PostgreSQL store that ``url`` names; here mypy checks that
    PostgresStore fulfils the Store interface."""
    return PostgresStore(url)
