"""``torwart-hub audit`` (the audit trail) and the CSV form of ``torwart-hub events``.

    torwart-hub audit [--site S] [--since ISO] [--until ISO] [--limit N] [--csv [--excel]]
    torwart-hub events --csv [--excel] [--site S] [--door D] [--type T] [--since ISO] [--until ISO]

Without ``--csv``, ``audit`` prints the newest ``--limit`` rows (default 50) as a table,
oldest first. With ``--csv`` the whole range goes to stdout as UTF-8 CSV (``hub.export``:
columns, quoting, times; ``--excel``: a byte order mark and ``;``), read a page at a time,
so any range fits; ``--limit`` then caps the rows. Events are exported as an admin sees
them (with members' ids and names). An export is recorded in the audit trail.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import IO

from ..core import Hub
from ..core.export import Page
from ..errors import HubError
from ..export import AUDIT_COLUMNS, EVENT_COLUMNS, EXCEL, PLAIN, CsvText
from .common import iso_time, load, open_cli_hub, table, when

Add = Callable[..., argparse.ArgumentParser]


def _check_range(args: argparse.Namespace) -> None:
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise HubError("--until must be after --since")
    if args.limit is not None and args.limit < 1:
        raise HubError("--limit must be at least 1")


def _filters(args: argparse.Namespace, *more: str) -> str | None:
    """The export's filters for its audit row."""
    parts = [f"{k}={getattr(args, k)}" for k in (*more, "since", "until", "limit") if getattr(args, k) is not None]
    return " ".join(parts) or None


def _rows(first: Page, more: Callable[[Page], Page | None], limit: int | None) -> Iterator[list[str]]:
    """The rows of ``first`` and the pages after it, at most ``limit``."""
    page: Page | None = first
    n = 0
    while page is not None:
        for row in page.rows:
            if limit is not None and n >= limit:
                return
            n += 1
            yield row
        page = more(page)


def write_csv(out: IO[bytes], columns: tuple[str, ...], rows: Iterator[list[str]], *, excel: bool) -> None:
    """The header and ``rows`` as CSV to ``out`` (UTF-8), chunk by chunk."""
    text = CsvText(EXCEL if excel else PLAIN)
    out.write(text.header(columns).encode("utf-8"))
    for chunk in text.rows(rows):
        out.write(chunk.encode("utf-8"))
    out.flush()


def events_csv(args: argparse.Namespace, hub: Hub) -> int:
    """``events --csv``: every event in the range, as an admin sees them."""
    _check_range(args)
    sites = [args.site] if args.site else None
    names = {s.id: True for s in hub.cfg.sites}

    def page(after: tuple[float, str, str, int] | None) -> Page:
        return hub.event_export_page(sites=sites, type=args.type, door=args.door, since=args.since,
                                     until=args.until, after=after, names_for=names)

    def more(p: Page) -> Page | None:
        return None if p.next_events is None else page(p.next_events)

    first = page(None)
    hub.record_act("export.events", site=args.site, door=args.door, detail=_filters(args, "type"))
    write_csv(sys.stdout.buffer, EVENT_COLUMNS, _rows(first, more, args.limit), excel=args.excel)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    cfg = load(args)
    _check_range(args)
    with open_cli_hub(args, cfg) as hub:
        if args.site is not None:
            hub.site(args.site)
        if args.csv:
            def page(after: tuple[float, int] | None) -> Page:
                return hub.audit_export_page(site=args.site, since=args.since, until=args.until, after=after)

            def more(p: Page) -> Page | None:
                return None if p.next_audit is None else page(p.next_audit)

            first = page(None)
            hub.record_act("export.audit", site=args.site, detail=_filters(args))
            write_csv(sys.stdout.buffer, AUDIT_COLUMNS, _rows(first, more, args.limit), excel=args.excel)
            return 0
        rows = hub.audit_log(site=args.site, since=args.since, until=args.until, limit=args.limit or 50)
    table(["TIME", "WHO", "VIA", "ACT", "SITE", "DOOR", "MEMBER", "OUTCOME", "DETAIL"],
          [[when(r.at), r.who, r.via, r.act, r.site_id, r.door, r.member_id,
            r.outcome + (f" ({r.reason})" if r.reason else ""), r.detail] for r in rows])
    return 0


def add_csv_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true", help="write CSV to stdout (UTF-8, every row in the range)")
    p.add_argument("--excel", action="store_true", help="with --csv: for Excel (a byte order mark, ';' between "
                   "fields)")


def add_audit_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    """Register ``audit`` (``add`` is the parser helper of ``build_parser``)."""
    p = add(sub, "audit", cmd_audit, "show who did what through the dashboard, the API and the command line "
            "(unlock, lockdown, push, enrollments, members, cards, grants, users), with refusals")
    p.add_argument("--site")
    p.add_argument("--since", type=iso_time, metavar="ISO")
    p.add_argument("--until", type=iso_time, metavar="ISO")
    p.add_argument("--limit", type=int, help="at most this many, the newest (default: 50; with --csv: all)")
    add_csv_options(p)
