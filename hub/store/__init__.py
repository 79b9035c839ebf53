"""The hub's persistent state: the ``Store`` interface, its records and errors, and
``open_store``, the one way to get a store."""

from .api import Store
from .sqlite.refusals import Refusal
from .sqlite.store import SqliteStore, open_store
from .sqlite.streams import QUARANTINE_BYTES, short, stream_notes
from .streams import BatchStored, EventBatch, IncomingEvent, Quarantined, StreamState
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

__all__ = [
    "QUARANTINE_BYTES", "BatchStored", "BookingChanges", "BookingLike", "CacheLogRow", "CacheState",
    "CacheVersionConflict", "Credential", "CredentialConflict", "Enrollment", "EventBatch", "EventTuple",
    "EventsStored", "FeedbackItem", "Grant", "IncomingEvent", "InvalidCredential", "LoginAttempt", "Member",
    "Quarantined", "Refusal", "RoomRow", "RoomSpec", "SessionRow", "SiteRow", "SiteSpec", "SiteState",
    "SiteStateChanges", "SqliteStore", "Store", "StoreError", "StoredBooking", "StoredEvent", "StreamState",
    "SyncState", "UnknownMember", "UnknownSite", "User", "UserExists", "open_store", "pseudonym", "short",
    "stream_notes", "supersedes",
]
