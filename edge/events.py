"""The site's events on their way to the hub (PROTOCOL.md §4), on the agent's main loop.

Every event is committed to the outbox before it is published; it is published at once
when the link is up and every earlier event has gone out, else by ``flush`` (after a
reconnect, a batch at a time); what the hub has not acknowledged within
``resend_seconds`` is sent again from the last ack. When the disk is full the event is
kept in memory and stored again on the next ``resend_check``; the agent keeps deciding
from its cache meanwhile, and ``storage_error`` tells the status what is wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from wire import messages as m
from wire.errors import WireError

from .errors import StorageError
from .outbox import Outbox

log = logging.getLogger(__name__)

#: Events published per turn of the main loop while catching up (badges go in between).
FLUSH_BATCH = 200


class EventStream:
    def __init__(self, outbox: Outbox, *, publish: Callable[[bytes], bool], connected: Callable[[], bool],
                 resend_seconds: float, post: Callable[[Callable[[], object]], None],
                 status_changed: Callable[[], None]) -> None:
        self.outbox = outbox
        self._publish = publish  # one event on the link; False when it is down
        self._connected = connected
        self.resend_seconds = resend_seconds
        self._post = post
        self._status_changed = status_changed
        self._sent_upto = 0
        self._ack_seen_at = time.monotonic()
        #: Why events cannot be written (disk full, ...), or None.
        self.storage_error: str | None = None
        #: Events that could not be stored: (type, ts, clock_synced, fields), stored again later.
        self._unsaved: list[tuple[str, float, bool, dict[str, Any]]] = []

    def emit(self, type_: str, *, ts: float, clock_synced: bool, **fields: Any) -> None:
        """Commit an event to the outbox, then publish it if the link is up and in order."""
        try:
            raw = self.outbox.emit(type_, ts=ts, clock_synced=clock_synced, **fields)
        except StorageError as exc:
            # Keep it in memory and retry: the agent goes on deciding from its cache.
            self._unsaved.append((type_, ts, clock_synced, fields))
            self.storage_failed(exc)
            return
        if self.storage_error is not None and not self._unsaved:
            self.storage_error = None
            log.warning("local storage writable again")
            self._post(self._status_changed)
        seq = self.outbox.last_seq
        if self._connected() and seq == self._sent_upto + 1 and self._publish(raw):
            self._sent_upto = seq

    def storage_failed(self, exc: StorageError) -> None:
        first = self.storage_error is None
        self.storage_error = str(exc)[:512]
        if first:
            log.error("local storage failing: %s (deciding from the cache continues; events wait in memory "
                      "until it is writable again)", exc)
            self._post(self._status_changed)  # the hub shows it (Status.storage_error)

    def link_up(self) -> None:
        """After a (re)connect: everything after the hub's last ack goes out again."""
        self._sent_upto = self.outbox.acked_upto
        self._ack_seen_at = time.monotonic()
        self.flush()

    def flush(self) -> None:
        """Publish unacknowledged events after the last one sent, a batch at a time."""
        if not self._connected():
            return
        batch = self.outbox.pending(limit=FLUSH_BATCH, after_seq=self._sent_upto)
        for seq, raw in batch:
            if not self._publish(raw):
                return
            self._sent_upto = seq
        if len(batch) == FLUSH_BATCH:
            self._post(self.flush)  # let badges in between batches

    def resend_check(self) -> None:
        """Store events held in memory; resend from the last ack when the hub went quiet."""
        if self._unsaved:
            pending, self._unsaved = self._unsaved, []
            for type_, ts, synced, fields in pending:
                self.emit(type_, ts=ts, clock_synced=synced, **fields)
        if self.outbox.pending_count() and time.monotonic() - self._ack_seen_at > self.resend_seconds:
            self._sent_upto = self.outbox.acked_upto
            self._ack_seen_at = time.monotonic()
            self.flush()

    def on_ack(self, payload: bytes) -> None:
        """``event/ack`` from the hub: drop what it has stored. An ack names this outbox's
        stream; one without a stream comes from a hub from before streams and applies to
        this site's one numbering (Outbox.ack)."""
        try:
            ack = m.decode(payload, m.EventAck)
        except WireError as exc:
            log.warning("malformed event ack dropped: %s", exc)
            return
        if self.outbox.ack(ack.upto, None if ack.stream is m.UNSET else ack.stream):
            self._ack_seen_at = time.monotonic()
