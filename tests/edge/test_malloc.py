"""The agent's glibc malloc settings (edge/malloc.py); their effect on memory is measured by
scripts/bench_edge, side by side with glibc's defaults."""

from __future__ import annotations

import platform

import pytest

from edge import malloc

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


def test_the_fixed_mmap_threshold_is_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORWART_MALLOC_TUNING", raising=False)
    assert malloc.tune() is True
    malloc.trim()


@pytest.mark.parametrize("value", ["off", "OFF", "0", "no"])
def test_malloc_tuning_can_be_switched_off_for_a_comparison(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TORWART_MALLOC_TUNING", value)
    assert malloc.tune() is False
