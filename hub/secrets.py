"""The hub's secret and key files: owner-only checks with messages that name the file, and
reading a secret (password, token, webhook secret). ``hub.config`` checks every file its
configuration names through ``check_files`` when it loads."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from wire.errors import KeyFileError
from wire.keys import read_key_file
from wire.private import not_owner_only

from .errors import ConfigError

Keyed = Iterable[tuple[str, str | None]]


def owner_only(path: str) -> str | None:
    """Why the secret file at ``path`` is unusable, or None if it is fine."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return f"{p} does not exist"
    except OSError as exc:
        return f"cannot read {p}: {exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{p} is not a file"
    if (why := not_owner_only(p, st.st_mode)) is not None:
        return f"{p} is {why}"
    if not os.access(p, os.R_OK):
        return f"cannot read {p}"
    return None


def check_files(f: str, *, keys: Keyed, secrets: Keyed, public: Keyed) -> None:
    """ConfigError naming the config file ``f`` and the key of the first unusable file:
    ``keys`` are key files (wire.keys: owner-only, well-formed), ``secrets`` owner-only
    files, ``public`` files that must merely exist. None values are skipped."""
    for key, value in keys:
        if value is None:
            continue
        try:
            read_key_file(value)
        except KeyFileError as exc:
            raise ConfigError(f, key, str(exc.args[0])) from None
    for key, value in secrets:
        if value is not None and (why := owner_only(value)) is not None:
            raise ConfigError(f, key, why)
    for key, value in public:
        if value is not None and not Path(value).is_file():
            raise ConfigError(f, key, f"{value} does not exist")


def read_secret(path: str) -> str:
    """A secret (password, token, webhook secret) from an owner-only file, stripped.

    Raise ConfigError if the file is missing, readable by others, or empty."""
    why = owner_only(path)
    if why is not None:
        raise ConfigError(path, None, why)
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ConfigError(path, None, "secret file is empty")
    return text
