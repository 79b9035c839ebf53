"""Errors of the site agent: one base class, specific subclasses."""

from __future__ import annotations

from wire.errors import ConfigFileError


class EdgeError(Exception):
    """Base of every error the edge agent raises on purpose."""


class ConfigError(EdgeError, ConfigFileError):
    """A configuration file is missing, unreadable or invalid; names the file and the key."""


class ReaderError(EdgeError):
    """A card reader failed (unplugged, timed out, spoke garbage); the reader is reopened."""


class StorageError(EdgeError):
    """The site's local database could not be written (e.g. the disk is full)."""
