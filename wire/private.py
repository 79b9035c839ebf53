"""Secret files (keys, passwords, TLS keys, stores of credentials) are their owner's alone:
the one check both sides make before they trust or create one."""

from __future__ import annotations

import os
import stat


def loose_mode(st_mode: int) -> int | None:
    """The permission bits of ``st_mode`` when its group or others have any access (read,
    write or execute), else None."""
    return stat.S_IMODE(st_mode) if st_mode & (stat.S_IRWXG | stat.S_IRWXO) else None


def not_owner_only(path: str | os.PathLike[str], st_mode: int | None = None) -> str | None:
    """None when only its owner may access the file at ``path``; otherwise what is wrong
    and the fix, to follow "PATH is ": ``accessible by group or others (mode 0644); run:
    chmod 600 PATH``. Stats ``path`` unless its ``st_mode`` is given (OSError propagates)."""
    mode = loose_mode(os.stat(path).st_mode if st_mode is None else st_mode)
    if mode is None:
        return None
    return f"accessible by group or others (mode {mode:04o}); run: chmod 600 {os.fspath(path)}"
