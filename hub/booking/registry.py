"""Booking adapters by name: ``adapter`` in ``[booking]`` → the module that implements it.

Adding a platform is one module (its adapter and its ``ADAPTER``, a
:class:`~.base.AdapterType`: how to build it from the hub's config, which config it needs,
how the sync speaks of what it reads) plus one line in ``ADAPTERS``. The hub's config, the
sync and the CLI know adapters only through here; a module is imported only when its
adapter is asked for.
"""

from __future__ import annotations

import importlib

from hub.errors import ConfigError

from .base import AdapterType

#: ``[booking] adapter`` → the module holding that adapter's ``ADAPTER``.
ADAPTERS: dict[str, str] = {
    "rest": "hub.booking.rest",
    "ics": "hub.booking.ics",
}


def names() -> list[str]:
    """The adapter names a config may give, sorted."""
    return sorted(ADAPTERS)


def adapter_type(name: str, file: str = "(hub config)") -> AdapterType:
    """The adapter called ``name`` (its module imported now); ConfigError(file,
    ``booking.adapter``) naming the known adapters when there is none of that name."""
    module = ADAPTERS.get(name)
    if module is None:
        raise ConfigError(file, "booking.adapter",
                          f"unknown booking adapter {name!r} (one of {', '.join(names())})")
    entry = getattr(importlib.import_module(module), "ADAPTER", None)
    if not (isinstance(entry, AdapterType) and entry.name == name):
        raise TypeError(f"{module}.ADAPTER is not the AdapterType of booking adapter {name!r}")
    return entry
