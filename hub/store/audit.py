"""The records of the audit trail (``Store.record_audit``; the SQLite side:
store/sqlite/audit.py) and the keys that page through events and audit rows in order
(the CSV exports, streamed a page at a time)."""

from __future__ import annotations

from dataclasses import dataclass

#: What an act came to: done, refused before anything happened (no permission, a site in
#: lockdown, bad parameters), or failed on the way (the broker down, no acknowledgement).
OUTCOMES = ("ok", "refused", "failed")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One act by a person, as recorded: ``who`` (a dashboard user's name, ``api-token``,
    or ``cli:<unix user>``), ``via`` (``dashboard``, ``api``, ``cli``, ``hub``), ``at``
    (Unix seconds), ``act`` (``unlock``, ``lockdown``, ``push``, ``users.add``, ...), where
    (site, door, member; each may be None), ``detail`` (the act's parameters, short text),
    ``outcome`` (one of :data:`OUTCOMES`) and ``reason`` (why refused or failed, with the
    HTTP status where there is one, e.g. ``409: site 'minheim' is in lockdown``)."""

    at: float
    who: str
    via: str
    act: str
    outcome: str
    site_id: str | None = None
    door: str | None = None
    member_id: str | None = None
    detail: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A stored :class:`AuditEntry` with its id (ascending in the order recorded)."""

    id: int
    at: float
    who: str
    via: str
    act: str
    outcome: str
    site_id: str | None
    door: str | None
    member_id: str | None
    detail: str | None
    reason: str | None


#: Where a page of events ended: (ts, site_id, stream, seq) of its last event; the next
#: page starts after it (``Store.events_after``).
EventKey = tuple[float, str, str, int]
#: Where a page of audit rows ended: (at, id) of its last row (``Store.audit_log``).
AuditKey = tuple[float, int]
