"""Card reader backends behind one interface (``base.Reader``); ``make_reader`` picks one.

Each backend module is imported only when a reader of its type is configured, so a site
without Wiegand readers never imports gpiozero's pin machinery for them.
"""

from __future__ import annotations

from edge.config import ReaderSection
from edge.errors import ReaderError

from .base import Reader, ReaderStats, ReadSink
from .serialbase import Backoff

__all__ = ["Backoff", "ReadSink", "Reader", "ReaderStats", "make_reader"]


def make_reader(cfg: ReaderSection, sink: ReadSink, *, backoff: Backoff | None = None) -> Reader:
    """A reader of ``cfg.type`` delivering to ``sink``; not started yet.

    ``backoff`` overrides the reopen backoff of device readers (rdm6300, pn532, sim);
    Wiegand has no device to reopen. Raises ReaderError when ``cfg`` lacks what the type
    needs (a port, pins, a path) or names an unknown type.
    """
    if cfg.type == "rdm6300":
        from .rdm6300 import Rdm6300Reader

        return Rdm6300Reader(cfg, sink, backoff=backoff)
    if cfg.type == "pn532":
        from .pn532 import Pn532Reader

        return Pn532Reader(cfg, sink, backoff=backoff)
    if cfg.type == "wiegand":
        from .wiegand import WiegandReader

        return WiegandReader(cfg, sink)
    if cfg.type == "osdp":
        from .osdp import OsdpReader

        return OsdpReader(cfg, sink, backoff=backoff)
    if cfg.type == "sim":
        from .sim import SimReader

        return SimReader(cfg, sink, backoff=backoff)
    raise ReaderError(f"reader {cfg.id}: unknown reader type {cfg.type!r}")
