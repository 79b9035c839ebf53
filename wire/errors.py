"""Errors the wire layer raises. Each carries a PROTOCOL.md ack error code."""

from __future__ import annotations

# Ack error codes, PROTOCOL.md §3.
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
WRONG_SITE = "wrong_site"
STALE_VERSION = "stale_version"
BASE_MISMATCH = "base_mismatch"
MALFORMED = "malformed"
TOO_LARGE = "too_large"
EXPIRED = "expired"
REPLAYED = "replayed"
UNKNOWN_DOOR = "unknown_door"
UNKNOWN_ROOM = "unknown_room"
LOCKDOWN = "lockdown"

ACK_CODES = frozenset(
    {
        BAD_SIGNATURE,
        UNKNOWN_KEY,
        WRONG_SITE,
        STALE_VERSION,
        BASE_MISMATCH,
        MALFORMED,
        TOO_LARGE,
        EXPIRED,
        REPLAYED,
        UNKNOWN_DOOR,
        UNKNOWN_ROOM,
        LOCKDOWN,
    }
)


class WireError(Exception):
    """Something on the wire was refused.

    ``code`` is the PROTOCOL.md error code an ack would carry; ``field`` names the
    offending field as a JSON path (``$.entries[3].cred``) where one is known.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field

    def __str__(self) -> str:
        return f"{self.code}: {self.args[0]}"


class KeyFileError(WireError):
    """A key file is missing, malformed, or readable by others."""

    def __init__(self, message: str) -> None:
        super().__init__("key_file", message)


class ConfigFileError(Exception):
    """A configuration file is missing, unreadable or invalid; names the file and the key.

    Edge and hub each subclass it under their own error base."""

    def __init__(self, file: str, key: str | None, message: str) -> None:
        self.file = file
        self.key = key
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")
