"""Errors of the hub: one base class, specific subclasses."""

from __future__ import annotations

from wire.errors import ConfigFileError


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError, ConfigFileError):
    """A configuration file is missing, unreadable or invalid; names the file and the key."""


class SyncError(HubError):
    """The booking platform could not be read (HTTP error, timeout, garbage); the last good
    bookings stay in force."""


class WebhookError(HubError):
    """A webhook request was refused (bad signature, malformed booking)."""
