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
#: ``bitsN:`` (N = 1..MAX_BITS): all N bits, left-aligned in whole bytes (PROTOCOL.md §1).
_BITS_KIND = re.compile(r"^bits([1-9][0-9]{0,3})$")
#: Longest raw card read (bits) taken as a ``bitsN:`` credential (a PIV FASC-N is 200 bits).
MAX_BITS = 1024


def check_credential(credential: str) -> str:
    """Return ``credential`` if it has one of the PROTOCOL.md §1 forms, else raise WireError."""
    kind, sep, value = credential.partition(":")
    m = _BITS_KIND.match(kind)
    if sep and m and int(m.group(1)) <= MAX_BITS:
        return _check_bits(kind, int(m.group(1)), value, credential)
    form = _FORMS.get(kind)
    if not sep or form is None:
        raise WireError(MALFORMED, f"unknown credential type {kind!r} (want one of {', '.join(_FORMS)}, bitsN)")
    if not form.match(value):
        raise WireError(MALFORMED, f"{kind} credential has a malformed value")
    return credential


def _check_bits(kind: str, nbits: int, value: str, credential: str) -> str:
    """A ``bitsN:`` value: ceil(N/8) bytes of upper-case hex whose padding bits are zero."""
    nbytes = (nbits + 7) // 8
    if not re.fullmatch(f"[0-9A-F]{{{2 * nbytes}}}", value) or int(value, 16) & ((1 << (8 * nbytes - nbits)) - 1):
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


def bits(nbits: int, data: int) -> str:
    """``bitsN:`` + all ``nbits`` bits of ``data`` (first bit most significant), left-aligned in
    whole bytes, upper-case hex: what an OSDP reader gives for the same bits, and what a
    Wiegand reader gives for a format other than 26/34 (35-bit Corporate 1000, 37-bit H10304)."""
    if not 1 <= nbits <= MAX_BITS or not 0 <= data < (1 << nbits):
        raise ValueError(f"{data:#x} is not a {nbits}-bit value")
    nbytes = (nbits + 7) // 8
    return check_credential(f"bits{nbits}:{data << (8 * nbytes - nbits):0{2 * nbytes}X}")


def bits_from_bytes(nbits: int, data: bytes) -> str:
    """``bitsN:`` for a raw card read of ``nbits`` bits left-aligned in ``data`` (as an OSDP
    reader sends them); bits past N are cleared."""
    nbytes = (nbits + 7) // 8
    if not 0 < nbits <= MAX_BITS or len(data) < nbytes:
        raise ValueError(f"a {nbits}-bit read needs {nbytes} bytes, got {len(data)}")
    value = int.from_bytes(data[:nbytes], "big") >> (8 * nbytes - nbits)
    return bits(nbits, value)


def pin(digits: str) -> str:
    return check_credential("pin:" + digits)


def redact(credential: str) -> str:
    """A form of a credential string safe for logs: the type only."""
    return credential.partition(":")[0] + ":…"
