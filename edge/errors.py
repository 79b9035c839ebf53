"""Errors of the site agent: one base class, specific subclasses."""

from __future__ import annotations

from wire.errors import ConfigFileError


class EdgeError(Exception):
    """Base of every error the edge agent raises on purpose."""


class ConfigError(EdgeError, ConfigFileError):
    """A configuration file is missing, unreadable or invalid; names the file and the key."""


class ReaderFailed(EdgeError):
    """A card reader could not be set up (its config, its pins, its key): the reader
    package's typed ``readers.errors.ReaderError`` is the ``__cause__``. Failures of a
    running reader are not raised: they become ``reader.error`` events."""


class StorageError(EdgeError):
    """The site's local database could not be written (e.g. the disk is full)."""
