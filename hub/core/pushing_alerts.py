"""Web Push subscriptions as the dashboard sees them: the hub's public VAPID key (the
browser's ``applicationServerKey``), and each user's browsers (subscribe, unsubscribe,
list). Delivery is the alert queue's (hub/alerts/pusher.py)."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from ..alerts.pusher import load_vapid, push_service_allowed
from ..alerts.webpush import Subscription, WebPushError
from ..errors import HubError
from ..store import PushSubscriptionRow
from ..store.push import MAX_PER_USER
from .base import Base

log = logging.getLogger(__name__)


class PushRefused(HubError):
    """A subscription the hub does not keep (the message says why): ``conflict`` when it
    could be kept another time (push not set up, too many browsers, another user's)."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


class WebPushing(Base):
    """The Web Push acts (see the module's docstring)."""

    def push_key(self) -> str | None:
        """The hub's VAPID public key (base64url), None when the hub has none (``torwart-hub
        init`` makes it) or alerts are not configured; WebPushError for an unusable key."""
        if self.cfg.alerts is None:
            return None
        vapid = load_vapid(self.cfg)
        return None if vapid is None else vapid.public_key

    def push_browsers(self, user: str) -> list[PushSubscriptionRow]:
        return self._store.push_subscriptions(user)

    def subscribe_push(self, user: str, sub: Subscription) -> PushSubscriptionRow:
        """Keep ``sub`` for ``user``; PushRefused for a subscription that cannot work, when
        push is not set up, or beyond ``MAX_PER_USER`` browsers."""
        try:
            if self.push_key() is None:
                raise PushRefused("Web Push is not set up on this hub ([alerts] and torwart-hub init)", conflict=True)
            sub.check()
        except WebPushError as exc:
            raise PushRefused(str(exc)) from None
        if not push_service_allowed(self.cfg, sub.endpoint):
            raise PushRefused(f"push service {urlsplit(sub.endpoint).hostname!r} is not one this hub sends to "
                              "([alerts] push_services)")
        owner = next((s.user_name for s in self._store.push_subscriptions() if s.endpoint == sub.endpoint), None)
        if owner not in (None, user):
            raise PushRefused("this browser is signed up by another user: that user signs it out first", conflict=True)
        mine = self._store.push_subscriptions(user)
        if len(mine) >= MAX_PER_USER and sub.endpoint not in {s.endpoint for s in mine}:
            raise PushRefused(f"at most {MAX_PER_USER} browsers per user: remove one first", conflict=True)
        row = self._store.add_push_subscription(user, sub.endpoint, sub.p256dh, sub.auth, now=time.time())
        log.info("Web Push: %s subscribed a browser (%d in all)", user, len(mine) + 1)
        return row

    def unsubscribe_push(self, user: str, endpoint: str) -> bool:
        """Forget ``user``'s browser at ``endpoint``; whether it was there."""
        return self._store.remove_push_subscription(endpoint, user)
