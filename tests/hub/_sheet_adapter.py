"""A made-up booking adapter, registered only by the tests that use it: it proves that a
platform is one module (this one) plus one line in ``hub.booking.registry.ADAPTERS``.

The "platform" is one CSV sheet at ``[booking] base_url``, one booking per line
(``id,resource,member,start,end`` in Unix seconds), read whole every time: the result is
complete, so a line that vanished is a cancelled booking. Rooms without ``resources`` get
``sheet:{site}/{room}``.
"""

from __future__ import annotations

import time
from types import TracebackType

from hub.booking.base import AdapterType, MemberResolver, PlatformBooking, SyncResult, UnsupportedOperation, Wording
from hub.booking.transport import HttpPolicy, make_session, request
from hub.config import HubConfig
from hub.errors import ConfigError, SyncError

WORDING = Wording(document="sheet", documents="from {n} sheets", reads_all="reading the booking sheet ({source})")


class SheetAdapter:
    supports_write = False
    wording = WORDING

    def __init__(self, url: str, policy: HttpPolicy, source: str = "sheet") -> None:
        self.url = url
        self.policy = policy
        self.source = source
        self._session = make_session(policy)  # BookingSync's progress hangs its hook here

    def fetch(self, since: int | None) -> SyncResult:
        reply = request(self._session, self.policy, "GET", self.url, what="booking sheet")
        if reply.status != 200:
            raise SyncError(f"booking sheet: HTTP {reply.status}")
        now = time.time()
        bookings = []
        for line in reply.body.decode().splitlines():
            if not line.strip():
                continue
            try:
                id, resource, member, start, end = line.split(",")
                bookings.append(PlatformBooking(id=id, resource_id=resource, member_id=member, start=int(start),
                                                end=int(end), status="confirmed", updated_at=now, pin=None,
                                                source=self.source))
            except ValueError:
                raise SyncError(f"booking sheet: not a booking line: {line[:40]!r}") from None
        return SyncResult(bookings=tuple(bookings), cursor=None, pages=1, complete=True)

    def check_in(self, booking_id: str, at: int) -> None:
        raise UnsupportedOperation("the booking sheet is read-only")

    def release(self, booking_id: str, reason: str = "no_show") -> None:
        raise UnsupportedOperation("the booking sheet is read-only")

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SheetAdapter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def check(cfg: HubConfig, path: str) -> None:
    if cfg.booking.base_url is None:
        raise ConfigError(path, "booking.base_url", 'adapter = "sheet" needs the URL of the booking sheet')


def build(cfg: HubConfig, resolve_member: MemberResolver, policy: HttpPolicy) -> SheetAdapter:
    if cfg.booking.base_url is None:
        raise ConfigError("(hub config)", "booking.base_url", 'adapter = "sheet" needs base_url')
    return SheetAdapter(cfg.booking.base_url, policy)


ADAPTER = AdapterType(name="sheet", build=build, check=check, room_resource=lambda site, room: f"sheet:{site}/{room}",
                      wording=WORDING)
