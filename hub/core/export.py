"""Pages of events and audit rows for the CSV exports (``hub.export``): each call reads
one page after the previous page's last key, so an export of any range holds one page at
a time, on the thread that owns the store (the running hub's loop, between other work).

Events are shown as the viewer may see them (``hub.core.display.event_view``: names only
for admins and at sites with ``show_names``); the door filter is applied to the page read
(a door is a field of the event, not a column of the store), so a page may hold fewer
rows than asked while more follow.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..export import audit_row, event_row
from ..store import AlertMail, AuditKey, EventKey
from .display import event_view
from .errors import UnknownSite
from .people import People

#: Events or audit rows read per page.
PAGE = 1000


@dataclass(frozen=True, slots=True)
class Page:
    """CSV rows of one page, and the key to read the next page after (None: the last page)."""

    rows: list[list[str]]
    next_events: EventKey | None = None
    next_audit: AuditKey | None = None


class Exporting(People):
    """The export pages (see the module's docstring)."""

    def event_export_page(self, *, sites: list[str] | None, type: str | None, door: str | None,
                          since: float | None, until: float | None, after: EventKey | None,
                          names_for: dict[str, bool], limit: int = PAGE) -> Page:
        """A page of events of ``sites`` (None: every site) as CSV rows (``EVENT_COLUMNS``);
        UnknownSite for a site not configured."""
        for s in sites or ():
            self.site(s)
        evs = self._store.events_after(site_ids=sites, type=type, since=since, until=until, after=after,
                                       limit=limit)
        cache: dict[str, str] = {}
        rows = []
        for ev in evs:
            view = event_view(self._store, ev, names=names_for.get(ev.site_id, False), cache=cache)
            if door is None or view.door == door:
                rows.append(event_row(view))
        last = evs[-1] if len(evs) == limit else None
        return Page(rows, next_events=None if last is None else (last.ts, last.site_id, last.stream, last.seq))

    def audit_export_page(self, *, site: str | None, since: float | None, until: float | None,
                          after: AuditKey | None, limit: int = PAGE) -> Page:
        """A page of audit rows (of ``site``, or all) as CSV rows (``AUDIT_COLUMNS``)."""
        rows = self._store.audit_log(site_id=site, since=since, until=until, after=after, limit=limit)
        last = rows[-1] if len(rows) == limit else None
        return Page([audit_row(r) for r in rows], next_audit=None if last is None else (last.at, last.id))

    def failing_deliveries(self, limit: int = 50) -> list[AlertMail]:
        """Alert messages and webhooks whose last try failed, still queued (the audit page
        shows them to admins)."""
        return self._store.failing_alert_deliveries(limit=limit)


__all__ = ["PAGE", "Exporting", "Page", "UnknownSite"]
