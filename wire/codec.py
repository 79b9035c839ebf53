"""JSON encoding and strict decoding of wire messages (msgspec), and the UTF-8 check.

``decode`` refuses anything that is not a valid document of the asked type with
WireError(malformed) naming the JSON path of the offending field; ``wire.messages``
re-exports these, so callers write ``m.decode(data, m.Status)``.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import msgspec

from .errors import MALFORMED, WireError

PATH_RE = re.compile(r" - at `(\$[^`]*)`$")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_UTF8_CHUNK = 1 << 16


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a message (or any JSON-able value)."""
    return _encoder.encode(obj)


def check_utf8(data: bytes | bytearray | memoryview | str) -> None:
    """Refuse bytes that are not UTF-8 anywhere, also inside keys that decoding would skip
    as unknown (msgspec does not look at those): such a document is not JSON."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return
    view = memoryview(data).cast("B")
    if view.nbytes <= _UTF8_CHUNK:
        try:
            codecs.decode(view, "utf-8")
        except UnicodeDecodeError as exc:
            raise WireError(MALFORMED, f"not valid UTF-8 at byte {exc.start}") from None
        return
    if isinstance(data, bytes | bytearray) and data.isascii():
        return  # the common case for a large cache body: no copy at all
    # Large and not pure ASCII: validate in pieces, so that a 15 MB body never costs a
    # 15 MB str just to be checked (the peak memory of a site applying a cache).
    dec = codecs.getincrementaldecoder("utf-8")()
    for off in range(0, view.nbytes, _UTF8_CHUNK):
        pending = len(dec.getstate()[0])  # a character cut at the previous piece's end
        try:
            dec.decode(view[off:off + _UTF8_CHUNK], final=off + _UTF8_CHUNK >= view.nbytes)
        except UnicodeDecodeError as exc:
            raise WireError(MALFORMED, f"not valid UTF-8 at byte {off + exc.start - pending}") from None


def decode(data: bytes | bytearray | str, type_: Any) -> Any:
    """Decode and validate ``data`` as ``type_``; raise WireError(malformed) naming the field.

    ``type_`` is a message class or a union such as ``AnyEvent`` or ``SignedBody``.
    """
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    check_utf8(data)
    try:
        return dec.decode(data)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = PATH_RE.search(msg)
        raise WireError(MALFORMED, msg, field=m.group(1) if m else None) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec lets invalid UTF-8 inside a string escape as UnicodeDecodeError.
        raise WireError(MALFORMED, f"not valid JSON: {exc}") from None


def to_builtins(obj: Any) -> Any:
    """A message as plain dicts and lists (e.g. to store it)."""
    return msgspec.to_builtins(obj)
