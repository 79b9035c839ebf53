"""The hub's store on PostgreSQL: ``PostgresStore`` implements ``hub.store.Store``.

Every operation is the SQLite store's (``hub.store.sqlite.SqliteStore`` and its mixins:
one portable SQL text per operation); this class only puts ``PgBase``'s connection and
transactions under them (``base``) and its own schema (``schema``). A store object belongs
to one thread, like the SQLite store: each thread opens its own (one connection each).
"""

from __future__ import annotations

from ..sqlite.store import SqliteStore
from .base import PgBase


class PostgresStore(PgBase, SqliteStore):
    """The hub's store in one PostgreSQL database (created tables, migrated on open)."""
