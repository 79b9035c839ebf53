"""The hub's persistent state: the ``Store`` interface (``api``), its records and errors
(``types``, ``streams``), and ``open_store(url)``, the one way to get a store (``url``: the
scheme picks the implementation; ``sqlite``: the ``hub.store.sqlite`` package, ``postgresql``:
``hub.store.postgres``, which runs the same operations over psycopg 3), and ``copy`` (a SQLite
store into PostgreSQL, verified: ``torwart-hub migrate-store``).

Light on purpose: importing it loads no implementation."""

from .alerts import AlertMail, AlertPrefs, AlertRow, OutMail
from .api import Store
from .audit import OUTCOMES, AuditEntry, AuditKey, AuditRow, EventKey
from .cache_rows import CacheBooking
from .keyring import KEY_STATES, KeyRingChanged, KeyRollout, SigningKeyRow
from .nodes import Change, Lease, NodeInfo, NodeRow
from .push import PushSubscriptionRow
from .streams import (
    QUARANTINE_BYTES,
    BatchStored,
    EventBatch,
    IncomingEvent,
    Quarantined,
    Refusal,
    StreamState,
    short,
    stream_notes,
)
from .types import (
    BookingChanges,
    BookingLike,
    CacheLogRow,
    CacheState,
    CacheVersionConflict,
    Credential,
    CredentialConflict,
    Enrollment,
    EventsStored,
    EventTuple,
    FeedbackItem,
    Grant,
    InvalidCredential,
    LoginAttempt,
    Member,
    RoomRow,
    RoomSpec,
    SessionRow,
    SiteRow,
    SiteSpec,
    SiteState,
    SiteStateChanges,
    StoredBooking,
    StoredEvent,
    StoreError,
    SyncState,
    UnknownMember,
    UnknownSite,
    User,
    UserExists,
    pseudonym,
    supersedes,
)
from .url import SCHEMES, open_store, scheme_of, sqlite_path

__all__ = [
    "KEY_STATES",
    "OUTCOMES",
    "QUARANTINE_BYTES",
    "SCHEMES",
    "AlertMail",
    "AlertPrefs",
    "AlertRow",
    "AuditEntry",
    "AuditKey",
    "AuditRow",
    "BatchStored",
    "BookingChanges",
    "BookingLike",
    "CacheLogRow",
    "CacheState",
    "CacheVersionConflict",
    "Credential",
    "CredentialConflict",
    "Enrollment",
    "EventBatch",
    "EventKey",
    "EventTuple",
    "EventsStored",
    "FeedbackItem",
    "Grant",
    "IncomingEvent",
    "InvalidCredential",
    "KeyRingChanged",
    "KeyRollout",
    "LoginAttempt",
    "Member",
    "OutMail",
    "PushSubscriptionRow",
    "Quarantined",
    "Refusal",
    "RoomRow",
    "RoomSpec",
    "SessionRow",
    "SigningKeyRow",
    "SiteRow",
    "SiteSpec",
    "SiteState",
    "SiteStateChanges",
    "Store",
    "StoreError",
    "StoredBooking",
    "StoredEvent",
    "StreamState",
    "SyncState",
    "UnknownMember",
    "UnknownSite",
    "User",
    "UserExists",
    "open_store",
    "pseudonym",
    "scheme_of",
    "short",
    "sqlite_path",
    "stream_notes",
    "supersedes",
]
__all__ += ["Change", "Lease", "NodeInfo", "NodeRow"]  # several hub nodes (nodes.py)
__all__ += ["CacheBooking"]  # what a cache is built from (cache_rows.py)
