"""Card enrollment, the hub's side: open a site's sealed ``enroll.read`` and enroll the card
to the member the pending enrollment is for (PROTOCOL.md §3 ``enroll``, §4 ``enroll.read``).

Used by the running hub (``HubService`` hands every ``enroll.read`` it ingests to
``EnrollHandler.on_read``) and by ``torwart-hub cards enroll --site`` (which watches the
site's events itself, so that enrollment works with or without a running hub). The store
makes sure exactly one of them enrolls the card (``Store.finish_enrollment``).

Also here: how a credential is shown to the admin who holds the card (``describe``: the
number printed on the card where its type has one). Nothing here logs a credential.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire import messages as m
from wire.creds import check_credential
from wire.errors import KeyFileError, WireError
from wire.keys import read_key_file
from wire.seal import unseal

from ..config import HubConfig
from ..errors import HubError
from ..store import Enrollment, Store

log = logging.getLogger(__name__)

#: The site's window for the card (``seconds`` of the enroll command) is at most this.
MAX_SECONDS = 120
#: A read is still accepted this long after the site's window closed (events in flight).
DELIVERY_GRACE = 30

ALTERED = "the sealed card read does not open (altered in transit, or sealed for another site)"


class EnrollError(HubError):
    """An enrollment could not be started or did not finish (the message says why)."""


def enroll_key_path(cfg: HubConfig) -> Path:
    """Where ``torwart-hub init`` keeps the X25519 enrollment key."""
    from ..provision import enroll_key_path as path

    return path(cfg)


def load_enroll_key(cfg: HubConfig) -> X25519PrivateKey:
    """The hub's X25519 enrollment key; EnrollError when it is missing or unreadable."""
    path = enroll_key_path(cfg)
    try:
        return X25519PrivateKey.from_private_bytes(read_key_file(path))
    except KeyFileError as exc:
        raise EnrollError(f"enrollment key: {exc.args[0]} (run `torwart-hub init`)") from None


def describe(credential: str) -> str:
    """What the admin sees for a credential: its type and the number printed on such cards.

    EM4100 fobs and cards are printed with their 32-bit id in decimal (the last 8 of the
    10 hex digits, 10 decimal digits with leading zeros), sometimes as ``facility,card``
    (bits 16–23 and 0–15 of that id, as a Wiegand-26 reader would report them); ISO 14443A
    cards carry no number of their own, so their UID is shown in hex. A string of no
    PROTOCOL.md §1 form (a site may seal anything) is shown as such; this never raises."""
    kind, _, value = credential.partition(":")
    try:
        check_credential(credential)
    except WireError:
        return f"a malformed {kind[:32]!r} credential"
    if kind == "em4100":
        card_id = int(value[2:], 16)
        return f"EM4100 card, printed number {card_id:010d} (or {(card_id >> 16) & 0xFF},{card_id & 0xFFFF:05d})"
    if kind == "iso14443a":
        return f"ISO 14443A card, UID {value}"
    if kind in ("wiegand26", "wiegand34"):
        data = int(value, 16)
        facility = (data >> 16) & 0xFF if kind == "wiegand26" else data >> 16
        return f"Wiegand {kind[7:]} card, {facility},{data & 0xFFFF:05d}"
    if kind == "pin":
        return f"a PIN of {len(value)} digits"
    return f"{kind} credential"


@dataclass(frozen=True)
class ReadOutcome:
    """What became of one ``enroll.read``: the enrollment after it, whether this process
    finished it (``mine``), and how the card is shown (None when the seal did not open)."""

    enrollment: Enrollment
    mine: bool
    shown: str | None = None
    kind: str | None = None
    #: Sites whose caches the new card changes (to rebuild and push), when ``mine``.
    sites: frozenset[str] = field(default_factory=frozenset)


class EnrollHandler:
    """Opens ``enroll.read`` events with the hub's key and finishes pending enrollments.

    ``key`` None: this process cannot open seals (no enrollment key); reads are left to a
    process that can (the CLI that sent the command has the key, or logs why not)."""

    def __init__(self, store: Store, key: X25519PrivateKey | None) -> None:
        self.store = store
        self.key = key

    def on_read(self, site: str, ev: m.EnrollRead, now: float) -> ReadOutcome | None:
        """Handle one ``enroll.read`` of ``site``; None when no enrollment of this site
        waits for that command (a read the hub did not ask for changes nothing)."""
        pending = self.store.get_enrollment(ev.command)
        if pending is None or pending.site_id != site:
            log.warning("site %s: enroll.read for command %s, which no enrollment here is waiting for; ignored",
                        site, ev.command)
            return None
        waiting = pending.status == "pending"
        if self.key is None:
            if waiting:
                log.warning("site %s: enroll.read for command %s: no enrollment key here to open it",
                            site, ev.command)
                return None
            return ReadOutcome(pending, mine=False)
        try:
            credential = unseal(ev.sealed, self.key, site)
        except WireError:
            done = self.store.close_enrollment(ev.command, "refused", ALTERED, now=now)
            assert done is not None
            if waiting:
                log.warning("site %s: enrollment %s refused: %s; nothing enrolled", site, ev.command, ALTERED)
            return ReadOutcome(done, mine=waiting)
        shown, kind = describe(credential), credential.partition(":")[0]
        if not waiting:  # another process (the running hub, or the CLI) has handled it
            return ReadOutcome(pending, False, shown, kind)
        if ev.reader != pending.reader:
            done = self.store.close_enrollment(ev.command, "refused",
                                               f"read at reader {ev.reader}, not at {pending.reader}", now=now)
            assert done is not None
            log.warning("site %s: enrollment %s refused: read at the wrong reader", site, ev.command)
            return ReadOutcome(done, mine=True)
        try:
            done, mine = self.store.finish_enrollment(ev.command, site, credential, now=now)
        except KeyError:
            return None
        sites: frozenset[str] = frozenset()
        if mine and done.status == "enrolled":
            from ..caches import LOOK_BACK

            sites = frozenset(self.store.sites_for_member(done.member_id, int(now) - LOOK_BACK))
        return ReadOutcome(done, mine, shown, kind, sites)


def for_service(cfg: HubConfig, store: Store) -> EnrollHandler:
    """The running hub's handler: with the enrollment key when there is one."""
    try:
        key: X25519PrivateKey | None = load_enroll_key(cfg)
    except EnrollError as exc:
        log.info("site enrollment reads are left to the CLI: %s", exc)
        key = None
    return EnrollHandler(store, key)
