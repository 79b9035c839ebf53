"""Look for raw credential strings (and their bare values) in logs, databases and MQTT
payloads: the privacy check of the chaos run.

A credential string is ``type:value`` (PROTOCOL.md §1). A leak may show the whole string or
only the value, in upper or lower case (``0A00B1C2D3``, ``0a00b1c2d3``). The scanner finds
both: it tokenises text into ``type:value`` strings and runs of hex digits and looks each
up in a set, so a scan costs time linear in the text, whatever the number of credentials.
A value counts when a whole run of hex digits equals it: windows inside longer runs would
match the random hex of hashes and ids by chance (32-hex hashes hold 23 windows of 10
digits each; over a run's millions of them, a 10-digit value set of a thousand cards would
give false alarms in a few runs out of a hundred), and a leaked value stands on its own
in a log line or a JSON string.

``words`` (names, e-mails, pseudonyms: what an erased member must no longer be found by)
are looked for as case-insensitive substrings, found as kind "word".

Values must be long enough not to match by chance: the chaos run uses 10- and 14-digit
card ids with letters in them and 12-digit PINs (a Unix time has 10 digits, a float's
fraction at most 7).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_HEXRUN = re.compile(rb"[0-9A-Fa-f]{8,}")
_STRING = re.compile(rb"(?i)(?:em4100|iso14443a|wiegand26|wiegand34|bits[0-9]{1,3}|pin):[0-9A-Fa-f]+")
MIN_VALUE = 10


@dataclass
class Finding:
    where: str
    what: str  # "string", "value" or "word"; never the credential or word itself


@dataclass
class CredentialScanner:
    credentials: Iterable[str]
    words: Iterable[str] = ()
    findings: list[Finding] = field(default_factory=list)
    scanned: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._strings: set[bytes] = set()
        self._values: set[bytes] = set()
        self._lengths: set[int] = set()
        for c in self.credentials:
            kind, _, value = c.partition(":")
            if len(value) < MIN_VALUE:
                raise ValueError(f"a {kind} credential value of {len(value)} characters would match by chance")
            self._strings.add(c.upper().encode())
            self._values.add(value.upper().encode())
            self._lengths.add(len(value))
        self._words = [w.casefold() for w in self.words if w]

    def hits(self, data: bytes) -> list[str]:
        """What kinds of leaks ``data`` holds ("string", "value", "word"); [] if none."""
        found: list[str] = []
        if self._words:
            text = data.decode("utf-8", "replace").casefold()
            found += ["word" for w in self._words if w in text]
        for m in _STRING.finditer(data):
            if m.group(0).upper() in self._strings:
                found.append("string")
        for m in _HEXRUN.finditer(data):
            run = m.group(0)
            if len(run) in self._lengths and run.upper() in self._values:
                found.append("value")
        return found

    def scan(self, where: str, data: bytes, kind: str) -> int:
        """Scan ``data`` (from ``where``, counted under ``kind``); record and return the hits."""
        self.scanned[kind] += 1
        hits = self.hits(data)
        for h in hits:
            self.findings.append(Finding(where, h))
        return len(hits)

    # --- sources ------------------------------------------------------------------------

    def scan_file(self, path: Path, kind: str = "log file") -> int:
        try:
            data = path.read_bytes()
        except OSError:
            return 0
        return self.scan(str(path), data, kind)

    def scan_sqlite(self, path: Path, *, skip: Iterable[tuple[str, str | None]] = ()) -> int:
        """Scan every row of every table of the SQLite file ``path`` (read-only, through its
        WAL). ``skip`` names (table, column) pairs to leave out (column None: the whole
        table): data that must hold credentials."""
        skipped = set(skip)
        total = 0
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                if (table, None) in skipped:
                    continue
                cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
                keep = [c for c in cols if (table, c) not in skipped]
                if not keep:
                    continue
                sql = "SELECT " + ", ".join(f'"{c}"' for c in keep) + f' FROM "{table}"'  # noqa: S608
                for row in conn.execute(sql):
                    data = b"\x1f".join(_bytes(v) for v in row)
                    total += self.scan(f"{path}:{table}", data, "database row")
        finally:
            conn.close()
        return total

    def scan_mqtt(self, topic: str, payload: bytes) -> int:
        """Scan an MQTT payload; a signed envelope is opened (base64, gzip) and its body
        scanned too, since a leak inside it would not show in the raw bytes."""
        total = self.scan(topic, payload, "mqtt message")
        body = envelope_body(payload)
        if body is not None:
            total += self.scan(topic + " (envelope body)", body, "mqtt envelope body")
        return total


def envelope_body(payload: bytes) -> bytes | None:
    """The body bytes of a signed envelope (decompressed), or None if it is not one.
    No signature check: the scanner looks at what travelled, forged or not."""
    if not payload.startswith(b"{") or b'"sig"' not in payload:
        return None
    try:
        doc = json.loads(payload)
        body = base64.b64decode(doc["body"], validate=True)
        if doc.get("enc") == "json+gzip":
            body = gzip.decompress(body)
    except (ValueError, KeyError, TypeError, binascii.Error, OSError, EOFError):
        return None
    return body


def _bytes(v: object) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    return str(v).encode("utf-8", "replace")


def files_under(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name.endswith(suffixes):
            yield p
