"""Reader types by name: ``type`` in ``[[readers]]`` → the module and config struct.

Adding a reader type is one module (its ``ReaderConfig`` subclass with ``create``, and
its reader) plus one line in ``TYPES``. A module is imported only when a reader of its
type is configured, so a site without OSDP readers never loads libosdp, and the hub's
desk enrollment loads only the driver it reads with.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import Backoff, Reader, ReadSink
from .config import ReaderConfig
from .errors import ReaderConfigError


@dataclass(frozen=True)
class ReaderType:
    """One registry line: ``module`` holds the config struct ``config`` (a ReaderConfig
    subclass); ``by_device``: configured by a device path alone (``TYPE:DEVICE``, as the
    hub's desk enrollment does), through ``config.for_device``."""

    module: str
    config: str
    by_device: bool = False


TYPES: dict[str, ReaderType] = {
    "rdm6300": ReaderType("readers.rdm6300", "Rdm6300Config", by_device=True),
    "pn532": ReaderType("readers.pn532", "Pn532Config", by_device=True),
    "wiegand": ReaderType("readers.wiegand", "WiegandConfig"),
    "osdp": ReaderType("readers.osdp", "OsdpConfig"),
    "sim": ReaderType("readers.sim", "SimConfig"),
}


def config_type(type_name: str) -> type[ReaderConfig]:
    """The config struct of reader type ``type_name`` (its module imported now);
    ReaderConfigError (key ``type``) for a type not in ``TYPES``."""
    entry = TYPES.get(type_name)
    if entry is None:
        raise ReaderConfigError("type", f"unknown reader type {type_name!r} (one of {', '.join(sorted(TYPES))})")
    cls = getattr(importlib.import_module(entry.module), entry.config)
    if not (isinstance(cls, type) and issubclass(cls, ReaderConfig) and cls.type_name == type_name):
        raise TypeError(f"{entry.module}.{entry.config} is not the ReaderConfig of type {type_name!r}")
    return cls


def device_types() -> list[str]:
    """The types a device path alone configures (``TYPE:DEVICE``)."""
    return [name for name, entry in TYPES.items() if entry.by_device]


def make_reader(cfg: ReaderConfig, sink: ReadSink, *, backoff: Backoff | None = None) -> Reader:
    """The reader of ``cfg`` delivering to ``sink``; not started yet. ``backoff`` overrides
    the reopen backoff of readers with a device to reopen. Raises ReaderConfigError when
    ``cfg`` lacks what its type needs (a port, pins, a path)."""
    return cfg.create(sink, backoff=backoff)
