"""Mosquitto password-file entries and ACL files, written without mosquitto_passwd."""

from __future__ import annotations

import base64
import hashlib
import os

from wire.topics import ROOT, site_acl_patterns

from ..ha_settings import HA_ROOT

_ITERATIONS = 101  # mosquitto_passwd's default for the $7$ (PBKDF2-SHA512) format


def password_hash(password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """The Mosquitto 2 password-file hash of ``password`` (``$7$`` PBKDF2-SHA512)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_line(user: str, password: str) -> str:
    if ":" in user or "\n" in user:
        raise ValueError(f"user name {user!r} may not contain ':' or a newline")
    return f"{user}:{password_hash(password)}"


def acl_text(hub_users: tuple[str, ...] = ("hub",), *, homeassistant: str | None = None,
             ha_prefix: str = "homeassistant") -> str:
    """The broker ACL of PROTOCOL.md §2: hub users see every site; each site (user name or
    certificate CN = site id) writes and reads only its own topics. ``homeassistant``:
    Home Assistant's login, which reads the sites' retained state and the discovery
    configs and writes only its requests to the hub (hub/ha_control.py)."""
    lines = ["# Torwart broker ACL (PROTOCOL.md §2). Generated; edit the generator, not this file.", ""]
    for user in hub_users:
        lines += [f"user {user}", f"topic readwrite {ROOT}/#", f"topic readwrite {ha_prefix}/#",
                  f"topic readwrite {HA_ROOT}/#", ""]
    if homeassistant is not None:
        lines += [f"user {homeassistant}", f"topic read {ROOT}/+/status", f"topic read {ROOT}/+/door/+",
                  f"topic read {ROOT}/+/occupancy", f"topic read {ha_prefix}/#",
                  f"topic write {HA_ROOT}/+/door/+/set", f"topic write {HA_ROOT}/+/lockdown/set",
                  f"topic read {HA_ROOT}/+/result", ""]
    lines += ["# every other client: its own site only, %u = user name = site id"]
    lines += [f"pattern {access} {pattern}" for access, pattern in site_acl_patterns()]
    return "\n".join(lines) + "\n"
