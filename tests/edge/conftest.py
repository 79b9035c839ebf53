"""Fixtures of the edge tests beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge._faults import small_tmpfs


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs permission to mount; skipped otherwise)."""
    with small_tmpfs(tmp_path / "small") as mnt:
        if isinstance(mnt, str):
            pytest.skip(mnt)
        yield mnt
