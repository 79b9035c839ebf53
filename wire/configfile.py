"""Reading TOML configuration into typed, frozen structs (shared by edge and hub).

Unknown keys are errors (a misspelt key must not silently fall back to a default), and
every error names the file and the key path, e.g. ``minheim.toml: doors[1].lock_pin``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct

from .errors import ConfigFileError

T = TypeVar("T")
E = TypeVar("E", bound=ConfigFileError)

_PATH = re.compile(r" - at `\$(\S*)`$")


def _key(path: str) -> str | None:
    key = path.lstrip(".")
    return key or None


def resolve_path(base: Path, value: str | None) -> str | None:
    """A path from a config file: ``~`` expanded, and relative to ``base`` (the config
    file's directory) unless absolute; None stays None."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def broker_port(port: int | None, tls: bool) -> int:
    """The MQTT broker's port: ``port`` if given, else MQTT's standard one (8883 over TLS, 1883 plain)."""
    return port if port is not None else (8883 if tls else 1883)


class BrokerSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a side reaches the MQTT broker: the keys the edge's ``[hub]`` and the hub's
    ``[mqtt]`` sections share (each adds its own). Paths are resolved by the loader."""

    host: str
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    tls: bool = False
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: Annotated[int, Meta(ge=5, le=3600)] = 30

    @property
    def effective_port(self) -> int:
        """The configured port, else MQTT's standard one (8883 over TLS, 1883 plain)."""
        return broker_port(self.port, self.tls)


def load_toml(path: str | Path, type_: type[T], error: type[E]) -> T:
    """Parse the TOML file at ``path`` into ``type_``; raise ``error(file, key, message)``."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(str(p), None, "file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(p), None, f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(str(p), None, f"not valid TOML: {exc}") from None
    return convert(data, type_, str(p), error)


def convert(data: Any, type_: type[T], file: str, error: type[E], *, at: str | None = None) -> T:
    """``data`` (a part of ``file``) as ``type_``, or ``error(file, key, message)``; ``at`` is
    the key path of ``data`` in the file (e.g. ``readers[2]``), put before every key named."""
    try:
        return msgspec.convert(data, type_, str_keys=True)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = _PATH.search(msg)
        key = _key(m.group(1)) if m else None
        text = _PATH.sub("", msg)
        if text.startswith("Object contains unknown field"):
            field = text.split("`")[1]
            key = f"{key}.{field}" if key else field
            text = "unknown key (misspelt? see the annotated example config)"
        elif text.startswith("Object missing required field"):
            field = text.split("`")[1]
            key = f"{key}.{field}" if key else field
            text = "required key is missing"
        if at:
            key = at if not key else f"{at}{key}" if key.startswith("[") else f"{at}.{key}"
        raise error(file, key, text) from None
