"""Events and the audit trail as CSV, for the command line (``torwart-hub events --csv``,
``torwart-hub audit --csv``) and the dashboard's downloads: the columns, one row per
record, and the text in chunks, so that any range streams a page at a time.

The format: UTF-8, one header row, RFC 4180 quoting (a field with the separator, a quote
or a line break is quoted, quotes doubled), CRLF line ends, times in ISO 8601 with the
hub's UTC offset (``2026-11-23T08:00:05+01:00``). The default style is plain CSV (comma,
no byte order mark), what scripts and Python's ``csv`` module expect. ``EXCEL`` is for a
German Excel opened by double-click: a UTF-8 byte order mark (without it Excel reads the
file as Windows-1252 and garbles umlauts) and ``;`` as the separator (German Excel's list
separator). A text field that a spreadsheet would take for a formula (starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``: names and
details come from outside the hub (CSV injection).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msgspec import UNSET

if TYPE_CHECKING:  # hub.core imports this module
    from .core.pages import EventView
    from .store import AuditRow

#: The events export's columns. ``member`` and ``name`` are empty where the viewer may
#: not see names (a caretaker at a site without ``show_names``).
EVENT_COLUMNS = ("time", "site", "type", "level", "door", "room", "reader", "member", "name", "reason", "seconds",
                 "error", "action", "version", "detail", "command", "stream", "seq")
#: The audit export's columns.
AUDIT_COLUMNS = ("time", "who", "via", "act", "outcome", "site", "door", "member", "detail", "reason", "id")
#: Rows per chunk of text handed on.
CHUNK_ROWS = 500
BOM = "\ufeff"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class CsvStyle:
    """The separator and whether the text starts with a UTF-8 byte order mark."""

    delimiter: str = ","
    bom: bool = False


PLAIN = CsvStyle()
EXCEL = CsvStyle(";", True)


def iso(t: float | None) -> str:
    """Unix seconds as ISO 8601 in the hub's local time with its offset ("" for None)."""
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def text(value: object) -> str:
    """A field from outside the hub: as is, unless a spreadsheet would run it as a formula."""
    if value is None or value is UNSET:
        return ""
    s = str(value)
    return "'" + s if s.startswith(_FORMULA) else s


def _num(value: object) -> str:
    return "" if value is None or value is UNSET else str(value)


def event_row(v: EventView) -> list[str]:
    """One event as :data:`EVENT_COLUMNS`."""
    return [iso(v.ts), v.site, v.type, v.level, text(v.door), text(v.room), text(v.reader), text(v.who),
            text(v.name), text(v.reason), _num(v.seconds), text(v.error), text(v.action), _num(v.version),
            text(v.detail), text(v.command), v.stream, str(v.seq)]


def audit_row(r: AuditRow) -> list[str]:
    """One audit row as :data:`AUDIT_COLUMNS`."""
    return [iso(r.at), text(r.who), r.via, r.act, r.outcome, text(r.site_id), text(r.door), text(r.member_id),
            text(r.detail), text(r.reason), str(r.id)]


class CsvText:
    """Rows to CSV text in the given style: ``header()`` first, then ``rows(...)`` per page."""

    def __init__(self, style: CsvStyle = PLAIN) -> None:
        self.style = style
        self._buf = io.StringIO()
        self._w = csv.writer(self._buf, delimiter=style.delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")

    def _take(self) -> str:
        out = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return out

    def header(self, columns: Sequence[str]) -> str:
        self._w.writerow(columns)
        return (BOM if self.style.bom else "") + self._take()

    def rows(self, rows: Iterable[Sequence[str]]) -> Iterator[str]:
        """The rows' text, :data:`CHUNK_ROWS` rows a chunk."""
        for n, row in enumerate(rows, 1):
            self._w.writerow(row)
            if n % CHUNK_ROWS == 0:
                yield self._take()
        rest = self._take()
        if rest:
            yield rest
