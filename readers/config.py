"""What a reader is configured with: one frozen struct per reader type.

Each reader module declares its type's struct, a subclass of ``ReaderConfig``, holding the
keys of that type (a serial port and its baud rate, two pins, a FIFO path, …); the struct
also knows how to check itself and how to build its reader (``create``). The registry
(``readers.registry``) maps a ``type`` name to the module and struct.

The edge reads a ``[[readers]]`` entry: it validates the keys every entry has (``id``,
``type``, ``door``, ``direction``) itself and hands the rest to the type's struct, whose
msgspec types and ``settle()`` check them; a ``ReaderConfigError`` names the key. The hub's
desk enrollment builds a struct from ``TYPE:DEVICE`` with ``for_device``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Self

import msgspec
from msgspec import Meta, Struct

from .errors import ReaderConfigError

if TYPE_CHECKING:
    from .base import Backoff, Reader, ReadSink

#: A BCM number (17) or a gpiozero pin name ("GPIO17", "BOARD11").
Pin = int | str
Baudrate = Annotated[int, Meta(ge=1200, le=921600)]
#: Turns a path as written in a config into the one to use (absolute).
Resolve = Callable[[str], str]


class ReaderConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The settings every reader type has; each type subclasses it with its own keys and
    sets ``type_name`` (its ``type`` in ``[[readers]]``)."""

    type_name: ClassVar[str] = ""

    #: The reader's name in logs and in the sink's calls.
    id: str
    #: One read per presentation: the same card again within this many seconds is dropped.
    holdoff_seconds: Annotated[float, Meta(ge=0, le=60)] = 1.0

    def settle(self, *, resolve: Resolve, data_dir: Path) -> Self:
        """This config checked and completed: defaults filled in, each path it names passed
        through ``resolve`` (the edge: relative to the config file), files it keeps in
        ``data_dir`` (the site's data directory). ReaderConfigError names the key."""
        return self

    def check_files(self) -> None:
        """Read and check the files it names (a key file); ReaderConfigError names the key."""

    def pins(self) -> dict[str, Pin]:
        """The GPIO pins it claims, by key (the edge checks that no pin is used twice)."""
        return {}

    def shared(self) -> dict[str, tuple[Hashable, str]]:
        """Resources no two readers may share, by key: (resource, how to name it), e.g.
        ``{"address": (("/dev/ttyUSB0", 1), "address 1 on /dev/ttyUSB0")}``."""
        return {}

    def where(self) -> str:
        """Where the reader is connected, in a few words (``torwart-edge check``)."""
        return "-"

    @classmethod
    def for_device(cls, reader_id: str, device: str, *, holdoff_seconds: float = 1.0) -> Self:
        """A config for a reader on ``device`` alone (desk enrollment: ``TYPE:DEVICE``);
        ReaderConfigError when the type needs more than a device path."""
        raise ReaderConfigError("type", f"a {cls.type_name} reader needs more than a device path")

    def create(self, sink: ReadSink, *, backoff: Backoff | None = None) -> Reader:
        """The reader for this config, delivering to ``sink``; not started yet.
        ``backoff`` overrides the reopen backoff where the reader has a device to reopen.
        Raises ReaderConfigError when the config lacks what the reader needs."""
        raise NotImplementedError


class SerialConfig(ReaderConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A reader on one serial port (``serial_for_url``: a device path, a symlink, a URL)."""

    default_baudrate: ClassVar[int] = 9600

    port: str | None = None
    #: Default: the type's usual rate (``default_baudrate``).
    baudrate: Baudrate | None = None

    def settle(self, *, resolve: Resolve, data_dir: Path) -> Self:
        if not self.port:
            raise ReaderConfigError("port", f"a {self.type_name} reader needs the serial port (e.g. /dev/ttyAMA0)")
        return msgspec.structs.replace(self, baudrate=self.baudrate or self.default_baudrate)

    def where(self) -> str:
        return self.port or "-"

    @classmethod
    def for_device(cls, reader_id: str, device: str, *, holdoff_seconds: float = 1.0) -> Self:
        return cls(id=reader_id, port=device, baudrate=cls.default_baudrate, holdoff_seconds=holdoff_seconds)
