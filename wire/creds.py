"""Credential strings and their keyed hashes (PROTOCOL.md §1).

A reader turns what it read into a credential string; the site only ever stores and
sends ``cred_hash(site_cred_key, credential)``.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .errors import MALFORMED, WireError

_FORMS = {
    "em4100": re.compile(r"^[0-9A-F]{10}$"),
    "iso14443a": re.compile(r"^(?:[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20})$"),
    "wiegand26": re.compile(r"^[0-9A-F]{6}$"),
    "wiegand34": re.compile(r"^[0-9A-F]{8}$"),
    "pin": re.compile(r"^[0-9]{4,12}$"),
}


_BITS = re.compile(r"^bits([1-9][0-9]{0,3})$")
#: Longest raw card read (bits) taken as a ``bitsN:`` credential.
MAX_BITS = 1024


def check_credential(credential: str) -> str:
    """Return ``credential`` if it has one of the PROTOCOL.md §1 forms, else raise WireError."""
    kind, sep, value = credential.partition(":")
    m = _BITS.match(kind)
    if sep and m is not None and int(m.group(1)) <= MAX_BITS:
        n = int(m.group(1))
        if len(value) != 2 * ((n + 7) // 8) or re.fullmatch(r"[0-9A-F]+", value) is None:
            raise WireError(MALFORMED, f"{kind} credential has a malformed value")
        return credential
    form = _FORMS.get(kind)
    if not sep or form is None:
        raise WireError(MALFORMED, f"unknown credential type {kind!r} (want one of {', '.join(_FORMS)})")
    if not form.match(value):
        raise WireError(MALFORMED, f"{kind} credential has a malformed value")
    return credential


def cred_hash(site_key: bytes, credential: str) -> str:
    """HMAC-SHA256(site_key, credential)[:16 bytes] as 32 lower-case hex characters."""
    return hmac.new(site_key, credential.encode("utf-8"), hashlib.sha256).digest()[:16].hex()


def em4100(data_hex: str) -> str:
    """``em4100:`` + the 10 hex digits of an RDM6300 frame (version byte + 32-bit id)."""
    return check_credential("em4100:" + data_hex.upper())


def iso14443a(uid: bytes) -> str:
    """``iso14443a:`` + the UID bytes (4, 7 or 10) in upper-case hex."""
    return check_credential("iso14443a:" + uid.hex().upper())


def wiegand(bits: int, data: int) -> str:
    """``wiegand26:``/``wiegand34:`` + the data bits without parity, upper-case hex."""
    if bits == 26:
        return check_credential(f"wiegand26:{data & 0xFFFFFF:06X}")
    if bits == 34:
        return check_credential(f"wiegand34:{data & 0xFFFFFFFF:08X}")
    raise ValueError(f"unsupported Wiegand format: {bits} bits")


def bits(nbits: int, data: bytes) -> str:
    """``bitsN:`` + the N bits of a raw card read (``data``, left-aligned in whole bytes,
    as an OSDP reader sends them) as upper-case hex; bits past N are cleared."""
    nbytes = (nbits + 7) // 8
    if not 0 < nbits <= MAX_BITS or len(data) < nbytes:
        raise ValueError(f"a {nbits}-bit read needs {nbytes} bytes, got {len(data)}")
    value = int.from_bytes(data[:nbytes], "big") & ~((1 << (8 * nbytes - nbits)) - 1)
    return check_credential(f"bits{nbits}:{value:0{2 * nbytes}X}")


def pin(digits: str) -> str:
    return check_credential("pin:" + digits)


def redact(credential: str) -> str:
    """A form of a credential string safe for logs: the type only."""
    return credential.partition(":")[0] + ":…"
