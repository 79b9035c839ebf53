"""``torwart-hub``, the hub's command line: parsing and output only; every act is the
application core's (``hub.core.Hub``). ``main`` is the entry point."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
