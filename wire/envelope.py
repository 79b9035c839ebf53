"""The signed envelope of PROTOCOL.md §3 (hub → site).

Opening an envelope checks its size first, then the signature over the exact body
bytes, and only then decompresses and parses the body. Nothing unsigned is ever parsed
beyond the envelope's five fields.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Mapping
from typing import Literal, overload

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import messages as m
from .errors import BAD_SIGNATURE, MALFORMED, TOO_LARGE, UNKNOWN_KEY, WRONG_SITE, WireError
from .keys import ed25519_public_raw, kid

DEFAULT_LIMIT = 16 * 1024 * 1024
#: Bodies above this many bytes are gzip-compressed by default.
COMPRESS_ABOVE = 2048


class Envelope(msgspec.Struct, kw_only=True, frozen=True):
    alg: Literal["Ed25519"]
    kid: str
    enc: Literal["json", "json+gzip"]
    body: str
    sig: str


_env_decoder = msgspec.json.Decoder(Envelope)


def sign(body: m.Body | bytes, key: Ed25519PrivateKey, *, compress: bool | None = None) -> bytes:
    """Serialize ``body`` and wrap it in a signed envelope; return the envelope's JSON bytes.

    ``compress`` None compresses bodies larger than COMPRESS_ABOVE bytes.
    """
    raw = body if isinstance(body, bytes) else m.encode(body)
    if compress is None:
        compress = len(raw) > COMPRESS_ABOVE
    if compress:
        raw = gzip.compress(raw, compresslevel=6, mtime=0)
    env = Envelope(
        alg="Ed25519",
        kid=kid(ed25519_public_raw(key.public_key())),
        enc="json+gzip" if compress else "json",
        body=base64.b64encode(raw).decode("ascii"),
        sig=base64.b64encode(key.sign(raw)).decode("ascii"),
    )
    return m.encode(env)


def _strict_b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(MALFORMED, f"envelope {what} is not standard base64", field=f"$.{what}") from None
    # Refuse non-canonical encodings (stray padding bits): one body, one spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise WireError(MALFORMED, f"envelope {what} is not canonical base64", field=f"$.{what}")
    return raw


_GUNZIP_STEP = 1 << 18


def _gunzip(data: bytes, limit: int) -> bytearray:
    """Decompress a gzip body into one buffer of the size its trailer states.

    A site decompresses a 15 MB cache on 80 MB of memory: growing the output in blocks and
    joining them would briefly hold it twice. The trailer's size is only a hint (it is
    checked by zlib at the end); output beyond it is counted, not kept, so a body that lies
    about its size costs no memory and is refused as too_large or malformed.
    """
    if len(data) < 18:
        raise WireError(MALFORMED, "body is not valid gzip: shorter than a gzip header and trailer")
    size = int.from_bytes(data[-4:], "little")
    if size > limit:
        size = 0  # no buffer for a size past the limit: decompressing counts what it really is
    out = bytearray(size)
    view = memoryview(out)
    pos = 0
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pending = data
    try:
        while pending and not d.eof:
            piece = d.decompress(pending, _GUNZIP_STEP)
            pending = d.unconsumed_tail
            if pos + len(piece) > size:  # more than the trailer says: count the rest, keep nothing
                pos += len(piece)
                while pending and not d.eof and pos <= limit:
                    pos += len(d.decompress(pending, _GUNZIP_STEP))
                    pending = d.unconsumed_tail
                if pos > limit:
                    raise WireError(TOO_LARGE, f"decompressed body exceeds {limit} bytes")
                raise WireError(MALFORMED, "body is not valid gzip: longer than its trailer states")
            view[pos:pos + len(piece)] = piece
            pos += len(piece)
    except zlib.error as exc:
        raise WireError(MALFORMED, f"body is not valid gzip: {exc}") from None
    finally:
        view.release()
    if not d.eof or d.unused_data:
        raise WireError(MALFORMED, "body is truncated or has trailing data after the gzip stream")
    return out  # zlib has checked the trailer: pos == size here


def open_envelope(
    data: bytes, keys: Mapping[str, Ed25519PublicKey], *, limit: int = DEFAULT_LIMIT
) -> bytes | bytearray:
    """Verify an envelope against ``keys`` (kid → public key); return the body's JSON bytes.

    Raises WireError with code too_large, malformed, unknown_key or bad_signature.
    """
    if len(data) > limit:
        raise WireError(TOO_LARGE, f"envelope of {len(data)} bytes exceeds the limit of {limit}")
    m.check_utf8(data)
    try:
        env = _env_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise WireError(MALFORMED, f"envelope: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise WireError(MALFORMED, f"envelope is not valid JSON: {exc}") from None
    pub = keys.get(env.kid)
    if pub is None:
        raise WireError(UNKNOWN_KEY, f"no trusted key with kid {env.kid!r}", field="$.kid")
    body = _strict_b64(env.body, "body")
    sig = _strict_b64(env.sig, "sig")
    enc = env.enc
    del env  # its base64 text is as large as the body: free it before decompressing
    if len(sig) != 64:
        raise WireError(BAD_SIGNATURE, "signature is not 64 bytes", field="$.sig")
    try:
        pub.verify(sig, body)
    except InvalidSignature:
        raise WireError(BAD_SIGNATURE, "signature does not verify", field="$.sig") from None
    if enc == "json+gzip":
        return _gunzip(body, limit)
    return body


@overload
def open_body(data: bytes, keys: Mapping[str, Ed25519PublicKey], site: str, *, limit: int = ...,
              stream: Literal[False] = ...) -> m.CacheFull | m.CacheDelta | m.Command: ...


@overload
def open_body(data: bytes, keys: Mapping[str, Ed25519PublicKey], site: str, *, limit: int = ...,
              stream: Literal[True]) -> m.CacheFullStream | m.CacheDelta | m.Command: ...


def open_body(
    data: bytes,
    keys: Mapping[str, Ed25519PublicKey],
    site: str,
    *,
    limit: int = DEFAULT_LIMIT,
    stream: bool = False,
) -> m.CacheFull | m.CacheFullStream | m.CacheDelta | m.Command:
    """Open an envelope addressed to ``site`` and decode its body (verified first).

    ``stream``: a cache.full comes back as CacheFullStream, its entries decoded only as
    they are consumed (what a site with little memory wants)."""
    return decode_body(open_envelope(data, keys, limit=limit), site, stream=stream)


def decode_body(
    verified: bytes | bytearray, site: str, *, stream: bool = False
) -> m.CacheFull | m.CacheFullStream | m.CacheDelta | m.Command:
    """Decode a body that ``open_envelope`` has verified, and check it is for ``site``.

    Separate from ``open_body`` so that a caller short of memory can let go of the
    envelope between the two steps."""
    body: m.CacheFull | m.CacheFullStream | m.CacheDelta | m.Command = m.decode(
        verified, m.SignedBodyStream if stream else m.SignedBody)
    if body.site != site:
        raise WireError(WRONG_SITE, f"body is for site {body.site!r}, this is {site!r}", field="$.site")
    return body


def trusted_keys(*public_keys: Ed25519PublicKey) -> dict[str, Ed25519PublicKey]:
    """The kid → key map ``open_envelope`` wants."""
    return {kid(ed25519_public_raw(k)): k for k in public_keys}
