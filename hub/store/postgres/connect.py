"""What a ``postgresql://`` store URL means: libpq's connection URI
(``postgresql://USER@HOST:PORT/DBNAME``, with libpq's own query parameters such as
``sslmode``), plus one of the hub's own: ``password_file=PATH``, a file holding the
password, readable by its owner only (hub.toml's ``[hub] database_password_file`` puts it
there). Without it the password comes the usual libpq ways: in the URL, ``PGPASSWORD``,
``PGPASSFILE`` or ``~/.pgpass``. The URL must name the database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from wire.private import not_owner_only

from ..types import StoreError
from ..url import shown

#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT = 10


def read_password_file(path: str) -> str:
    """The password in an owner-only file, stripped; StoreError naming the file otherwise."""
    p = Path(path)
    try:
        why = not_owner_only(p)
        text = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StoreError(f"database password file {p}: {exc.strerror or exc}") from None
    if why is not None:
        raise StoreError(f"database password file {p} is {why}")
    if not text:
        raise StoreError(f"database password file {p} is empty")
    return text


def split_url(url: str) -> tuple[str, str | None]:
    """(the libpq URL without ``password_file``, that file or None); StoreError for a URL
    libpq would not take or one without a database name."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise StoreError(f"store URL {shown(url)!r} is not a PostgreSQL store")
    query = parse_qsl(parts.query, keep_blank_values=True)
    password_file = next((v for k, v in query if k == "password_file"), None)
    rest = [(k, v) for k, v in query if k != "password_file"]
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    try:
        info = psycopg.conninfo.conninfo_to_dict(plain)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"store URL {shown(url)!r}: {str(exc).strip()}") from None
    if not info.get("dbname"):
        raise StoreError(f"store URL {shown(url)!r} names no database: write postgresql://USER@HOST:PORT/DBNAME")
    if not all(port.isdigit() for port in str(info.get("port", "5432")).split(",")):
        raise StoreError(f"store URL {shown(url)!r}: the port must be a number")
    if password_file == "":
        raise StoreError(f"store URL {shown(url)!r}: password_file is empty")
    return plain, password_file


def connect_args(url: str) -> tuple[str, dict[str, Any]]:
    """The conninfo and keyword arguments for ``psycopg.connect``."""
    plain, password_file = split_url(url)
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in plain and "PGCONNECT_TIMEOUT" not in os.environ:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    if password_file is not None:
        kwargs["password"] = read_password_file(password_file)
    kwargs.setdefault("application_name", "torwart-hub")
    return plain, kwargs
