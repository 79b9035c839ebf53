"""Card reader drivers behind one interface (``base.Reader``), shared by the edge agent and
the hub's desk enrollment; neither imports the other, and this package imports neither.

One module per reader type (``rdm6300``, ``pn532``, ``wiegand``, ``osdp``, ``sim``), each
with its config struct (``config.ReaderConfig``); ``registry.TYPES`` names them, and
``make_reader`` builds the reader of a config. Errors are typed (``errors``).
"""

from __future__ import annotations

from .base import Backoff, Reader, ReaderStats, ReadSink
from .config import ReaderConfig
from .errors import ReaderConfigError, ReaderError
from .registry import TYPES, config_type, make_reader

__all__ = ["TYPES", "Backoff", "ReadSink", "Reader", "ReaderConfig", "ReaderConfigError", "ReaderError",
           "ReaderStats", "config_type", "make_reader"]
