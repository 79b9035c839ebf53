"""The audit trail's page and the CSV downloads of the dashboard.

- ``GET /audit`` (admins; caretakers 403): the newest audit rows (``limit``, default
  200), filtered by ``site``, ``since``, ``until``, with download links, and the alert
  messages and webhooks not delivered yet (their last try failed);
- ``GET /export/events.csv``: events of the caller's sites as CSV (a caretaker gets only
  their sites' events, names only where the site shows them); filters ``site``, ``door``,
  ``type``, ``since``, ``until``;
- ``GET /export/audit.csv`` (admins): the audit trail as CSV; filters ``site``,
  ``since``, ``until``.

``since``/``until`` are Unix seconds or ISO 8601 (local time without an offset); a bare
date as ``until`` counts its whole day. ``style=excel`` gives Excel's flavour (a byte
order mark, ``;``), default plain CSV (``hub.export``). A download is read from the store
a page at a time on the hub's loop and streamed as it is read, so a range of any size
holds one page in memory. Pages, not the JSON API: they take the session cookie (or the
admin token) like every page, and are not in the OpenAPI document. Every download is
recorded in the audit trail (``export.events``, ``export.audit``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Literal

from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..core.export import Page
from ..export import AUDIT_COLUMNS, EVENT_COLUMNS, EXCEL, PLAIN, CsvText
from .auth import Principal
from .checks import as_
from .common import on_loop
from .middleware import principal
from .model import BadRequest, parse, parse_time
from .render import page

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)

Text = Annotated[str, Meta(max_length=200)]


class ExportQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """The filters of a download or of the audit page (see the module's docstring)."""

    site: Text | None = None
    door: Text | None = None
    type: Text | None = None
    since: Text | None = None
    until: Text | None = None
    style: Literal["plain", "excel"] = "plain"
    limit: Annotated[int, Meta(ge=1, le=5000)] = 200
    lang: Literal["de", "en"] | None = None


class Exports:
    """The handlers (see the module's docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.cfg = hub.cfg

    def _query(self, request: Request, p: Principal) -> tuple[ExportQuery, float | None, float | None, str | None]:
        """The filters, checked: BadRequest (400) or LookupError (404: a site the caller may not see)."""
        # A form's empty fields ("all doors", no date) filter nothing.
        q = parse({k: v for k, v in request.query_params.items() if v != ""}, ExportQuery, what="the query")
        since, until = parse_time(q.since, "since"), parse_time(q.until, "until", end=True)
        if since is not None and until is not None and until <= since:
            raise BadRequest("until must be after since")
        if q.site is not None and (not p.may_see(q.site) or not self.hub.knows(q.site)):
            raise LookupError(f"no site {q.site!r}")
        if q.door is not None:
            doors = {d for s in self.cfg.sites if p.may_see(s.id) and q.site in (None, s.id) for d in s.doors}
            if q.door not in doors:
                raise BadRequest(f"no door {q.door!r}" + (f" at site {q.site!r}" if q.site else ""))
        return q, since, until, q.site

    def _refused(self, request: Request, p: Principal, exc: Exception) -> Response:
        status = 404 if isinstance(exc, LookupError) else 400
        key = "not_found" if status == 404 else "bad_request"
        return page(request, "error.html", {"message_key": key, "status": status, "message": str(exc)}, user=p,
                    status=status)

    def _forbidden(self, request: Request, p: Principal) -> Response:
        return page(request, "error.html", {"message_key": "forbidden", "status": 403}, user=p, status=403)

    async def _stream(self, columns: tuple[str, ...], first: Page, more: Callable[[Page], Page | None],
                      style: str, filename: str) -> Response:
        text = CsvText(EXCEL if style == "excel" else PLAIN)

        async def chunks() -> AsyncIterator[bytes]:
            yield text.header(columns).encode("utf-8")
            pg: Page | None = first
            while pg is not None:
                for chunk in text.rows(pg.rows):
                    yield chunk.encode("utf-8")
                pg = await on_loop(self.hub, functools.partial(more, pg))

        return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    async def events_csv(self, request: Request) -> Response:
        p = principal(request)
        try:
            q, since, until, site = self._query(request, p)
        except (BadRequest, LookupError) as exc:
            return self._refused(request, p, exc)
        visible = [s.id for s in self.cfg.sites if p.may_see(s.id)]
        sites = [site] if site else (None if p.sites is None else visible)
        names = {s.id: p.admin or s.show_names for s in self.cfg.sites}

        def read(after: tuple[float, str, str, int] | None) -> Page:
            return self.hub.event_export_page(sites=sites, type=q.type, door=q.door, since=since, until=until,
                                              after=after, names_for=names)

        def first() -> Page:
            self.hub.record_act("export.events", site=site, door=q.door,
                                detail=" ".join(f"{k}={v}" for k, v in (("type", q.type), ("since", q.since),
                                                                        ("until", q.until)) if v) or None)
            return read(None)

        pg = await on_loop(self.hub, as_(self.hub, p, first))
        return await self._stream(EVENT_COLUMNS, pg, lambda x: None if x.next_events is None
                                  else read(x.next_events), q.style, _filename("events", site))

    async def audit_csv(self, request: Request) -> Response:
        p = principal(request)
        if not p.admin:
            return self._forbidden(request, p)
        try:
            q, since, until, site = self._query(request, p)
        except (BadRequest, LookupError) as exc:
            return self._refused(request, p, exc)

        def read(after: tuple[float, int] | None) -> Page:
            return self.hub.audit_export_page(site=site, since=since, until=until, after=after)

        def first() -> Page:
            self.hub.record_act("export.audit", site=site, detail=" ".join(
                f"{k}={v}" for k, v in (("since", q.since), ("until", q.until)) if v) or None)
            return read(None)

        pg = await on_loop(self.hub, as_(self.hub, p, first))
        return await self._stream(AUDIT_COLUMNS, pg, lambda x: None if x.next_audit is None else read(x.next_audit),
                                  q.style, _filename("audit", site))

    async def audit(self, request: Request) -> Response:
        p = principal(request)
        if not p.admin:
            return self._forbidden(request, p)
        try:
            q, since, until, site = self._query(request, p)
        except (BadRequest, LookupError) as exc:
            return self._refused(request, p, exc)
        rows, failing = await on_loop(self.hub, lambda: (
            self.hub.audit_log(site=site, since=since, until=until, limit=q.limit), self.hub.failing_deliveries()))
        keep = {k: v for k, v in (("site", site), ("since", q.since), ("until", q.until)) if v}
        return page(request, "audit.html", {
            "rows": rows[::-1], "sites": [(s.id, s.name or s.id) for s in self.cfg.sites], "qs": keep,
            "q": {"site": site or "", "since": q.since or "", "until": q.until or ""},
            "title_key": "audit", "failing": failing,
        }, user=p)


def _filename(what: str, site: str | None) -> str:
    return f"torwart-{what}{'-' + site if site else ''}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
