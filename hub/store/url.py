"""Store URLs: ``open_store(url)`` is the one way to get a hub store, and the URL's scheme
picks the implementation.

Accepted forms:

- ``sqlite:///abs/path/hub.sqlite3``: a SQLite file at an absolute path;
- ``sqlite:relative/path/hub.sqlite3``: a SQLite file relative to the working directory
  (in hub.toml: to the config file's directory, like every path there);
- a plain filesystem path (``str`` or ``os.PathLike``): a SQLite file, as before store
  URLs existed, so that existing hub.toml files and callers keep working. A string is a
  URL when it starts with a scheme (letters, digits, ``+-.``, then ``:``); a relative path
  whose first part holds a colon is written ``./a:b`` or as a ``sqlite:`` URL.

The path of a ``sqlite:`` URL is taken as it is written (no percent-decoding, no query).
Anything else is refused with a ``StoreError`` that names the scheme and the supported ones.

Adding an implementation (e.g. PostgreSQL) is one package with ``open_url(url: str) ->
Store`` and one line in ``SCHEMES``; the package is imported only when a URL names it.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .api import Store
from .types import StoreError

#: Scheme → ``module:function`` that opens a store of that scheme from its URL.
SCHEMES: dict[str, str] = {
    "sqlite": "hub.store.sqlite:open_url",
    "postgresql": "hub.store.postgres:open_url",
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")

StoreUrl = str | os.PathLike[str]


def scheme_of(url: StoreUrl) -> str:
    """The scheme of a store URL (lower case); ``sqlite`` for a plain path. StoreError if
    ``url`` is empty or its scheme is not one of ``SCHEMES``."""
    if not isinstance(url, str):
        return "sqlite"
    if not url.strip():
        raise StoreError("empty store URL: give a path or sqlite:///path/to/hub.sqlite3")
    m = _SCHEME.match(url)
    if m is None:
        return "sqlite"
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise StoreError(f"store URL {_show(url)}: unknown scheme {scheme!r}; "
                         f"supported: {', '.join(sorted(SCHEMES))} (or a plain file path)")
    return scheme


def sqlite_path(url: StoreUrl) -> Path:
    """The SQLite file a ``sqlite:`` URL or plain path names. StoreError for another
    scheme, a host (``sqlite://host/...``), a query, or no file name."""
    if scheme_of(url) != "sqlite":
        raise StoreError(f"store URL {_show(url)} is not a SQLite store")
    if not isinstance(url, str) or _SCHEME.match(url) is None:
        return Path(url)
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host:
            raise StoreError(f"store URL {_show(url)}: a sqlite URL names no host; "
                             "write sqlite:///absolute/path or sqlite:relative/path")
        rest = slash + path
    if "?" in rest or "#" in rest:
        raise StoreError(f"store URL {_show(url)}: a sqlite URL takes no query or fragment")
    if not rest or rest.endswith("/"):
        raise StoreError(f"store URL {_show(url)} names no file")
    return Path(rest)


def resolve(url: str, base: Path) -> str:
    """``url`` with a relative SQLite path made relative to ``base`` (hub.toml's directory)
    and ``~`` expanded; other URLs are returned unchanged. StoreError as for ``scheme_of``."""
    if scheme_of(url) != "sqlite":
        return url
    path = sqlite_path(url).expanduser()
    full = path if path.is_absolute() else base / path
    return str(full) if _SCHEME.match(url) is None else f"sqlite://{full}"


#: Scheme → ``module:function`` that checks a URL of that scheme without connecting
#: (StoreError); imported only when a URL names it, like ``SCHEMES``.
CHECKS: dict[str, str] = {
    "postgresql": "hub.store.postgres.connect:split_url",
}


def check(url: str, base: Path) -> None:
    """StoreError if ``url`` (from hub.toml in ``base``) is not a store URL the hub can
    use: an unknown scheme, a malformed SQLite or PostgreSQL URL. Connects to nothing."""
    resolve(url, base)
    if (checker := CHECKS.get(scheme_of(url))) is not None:
        module, _, name = checker.partition(":")
        getattr(importlib.import_module(module), name)(url)


def config_problem(store: str | None, database: str | None, password_file: str | None,
                   base: Path) -> tuple[str, str] | None:
    """What is wrong with hub.toml's store keys (``[hub] store``, ``database``: the same URL
    under two names, and ``database_password_file``), as (key, why); None when nothing is."""
    if store is not None and database is not None:
        return "hub.database", "give the store's URL as store or as database, not both"
    key, url = ("hub.store", store) if store is not None else ("hub.database", database)
    try:
        if url is not None:
            check(url, base)
    except StoreError as exc:
        return key, str(exc)
    if password_file is not None and (url is None or scheme_of(url) != "postgresql"):
        return "hub.database_password_file", "needs a postgresql:// database"
    return None


def with_password_file(url: str, path: str | None) -> str:
    """A ``postgresql:`` URL with the hub's own ``password_file`` parameter (``path``, from
    hub.toml's ``database_password_file``; ``hub.store.postgres.connect`` reads it); any
    other URL, or None, unchanged."""
    if path is None or scheme_of(url) != "postgresql":
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password_file"]
    query.append(("password_file", path))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def open_store(url: StoreUrl) -> Store:
    """Open (create, migrate) the hub store that ``url`` names; each thread opens its own.
    StoreError for an unknown scheme or a malformed URL; what the implementation raises
    when the store cannot be opened."""
    scheme = scheme_of(url)
    module, _, name = SCHEMES[scheme].partition(":")
    opener = cast(Callable[[str], Store], getattr(importlib.import_module(module), name))
    return opener(os.fspath(url))


def shown(url: StoreUrl) -> str:
    """A store URL to print or log: without its password (``scheme://user:***@host``)."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", os.fspath(url))


def _show(url: StoreUrl) -> str:
    """A URL for an error message, quoted, without a password."""
    return repr(shown(url))
