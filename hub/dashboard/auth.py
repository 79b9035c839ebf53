"""Who is asking: dashboard sessions, the admin bearer token, CSRF and login rate limits.

- **Sessions**: a login makes a random 256-bit session id, sent as the ``torwart_session``
  cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, Path=/). The store keeps only its
  SHA-256, the user, a CSRF token and a fixed expiry (``[http] session_hours``); every
  request looks the session up, so logout, expiry and ``users remove`` take effect at once.
- **CSRF**: every state-changing request made with a session must carry the session's
  token, in the ``X-CSRF-Token`` header (fetch) or a ``csrf`` form field, compared in
  constant time; otherwise 403. The login form uses a double-submit token (a cookie and
  a form field that must match), so that no other site can log a browser in.
- **Bearer token** (``[http] admin_token_file``): an admin for API clients; it is not a
  browser's ambient credential, so it needs no CSRF token.
- **Rate limit**: after 5 failed logins within 60 s for a user name, or 20 from one
  address, further attempts are refused with 429 (the password is not even checked) until
  the oldest failure is a minute old. Each attempt is taken from the budget in one store
  transaction before its password is checked (a success gives it back), so a parallel
  burst gets no more checks than the limit; earlier failures stay counted after a success.
  The attempts are kept in the store, so a hub restart does not reset the count.
- **Roles**: admins may do everything and see names; caretakers see their sites only
  (others answer 404, as if they did not exist), see names only where the site has
  ``show_names = true``, and may unlock a door and check everybody out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .common import client_ip, on_loop
from .passwords import dummy_hash, verify_password

if TYPE_CHECKING:
    from ..core import Hub
    from ..store import LoginAttempt

log = logging.getLogger(__name__)

SESSION_COOKIE = "torwart_session"
LOGIN_COOKIE = "torwart_login"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"

#: What each role may do on the sites it sees.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"push", "unlock", "lockdown", "lockdown_end", "checkout_all", "enroll"}),
    "caretaker": frozenset({"unlock", "checkout_all"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The user behind a request."""

    name: str
    role: str
    #: The sites it may see; None: every site.
    sites: frozenset[str] | None
    #: The session's CSRF token; None for the bearer token (no CSRF needed).
    csrf: str | None = None
    #: The store key of the session (a hash of the cookie); None for the bearer token.
    session_key: str | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def may(self, action: str, site: str) -> bool:
        return self.may_see(site) and action in PERMISSIONS.get(self.role, frozenset())

    def csrf_ok(self, given: str | None) -> bool:
        if self.csrf is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class RateLimiter:
    """Login attempts per key within a sliding window, kept in the hub's store: a hub
    restart does not hand a guesser a fresh budget. An attempt is taken from the budget
    before the password is checked, in one store transaction, so a parallel burst gets no
    more checks than the limit."""

    def __init__(self, service: Hub, clock: Callable[[], float], window: float = 60.0) -> None:
        self.service = service
        self.clock = clock
        self.window = window

    async def reserve(self, limits: Iterable[tuple[str, int]]) -> LoginAttempt:
        """Take an attempt from every key's budget, or say how long to wait (nothing taken)."""
        now, limits = self.clock(), list(limits)
        store = self.service.accounts
        return await on_loop(self.service, lambda: store.reserve_login_attempt(limits, at=now, window=self.window))

    async def release(self, attempt: LoginAttempt) -> None:
        """Give a reserved attempt back (the password was right)."""
        store = self.service.accounts
        await on_loop(self.service, lambda: store.release_login_attempt(attempt.ids))


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Auth:
    """Sessions and tokens of one hub. ``clock`` is replaceable (tests travel in time)."""

    USER_LIMIT = 5
    IP_LIMIT = 20

    def __init__(self, service: Hub, *, token: str | None, session_seconds: float) -> None:
        self.service = service
        self.token = token
        self.session_seconds = session_seconds
        self.clock: Callable[[], float] = time.time
        self.limiter = RateLimiter(service, self._now)

    def _now(self) -> float:
        return self.clock()  # looked up on each call: tests may replace the clock

    async def principal(self, request: Request) -> Principal | None:
        """The bearer token's admin or the session's user; None when neither is valid."""
        given = request.headers.get("authorization")
        if given is not None and given[:7].lower() == "bearer ":
            if self.token is not None and hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return Principal(name="api-token", role="admin", sites=None)
            return None
        sid = request.cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        key = session_key(sid)
        now = self.clock()
        row = await on_loop(self.service, lambda: self.service.accounts.get_session(key, now))
        if row is None:
            return None
        u = row.user
        return Principal(name=u.name, role=u.role, sites=None if u.sites is None else frozenset(u.sites),
                         csrf=row.csrf, session_key=key)

    async def still_valid(self, p: Principal) -> bool:
        """Whether ``p``'s session still exists (long-lived streams re-check it)."""
        if p.session_key is None:
            return True
        key, now = p.session_key, self.clock()
        return await on_loop(self.service, lambda: self.service.accounts.get_session(key, now)) is not None

    async def login(self, request: Request, name: str, password: str) -> tuple[str, str] | float | None:
        """Check the password: (session id, CSRF token) on success, None when wrong, or
        the seconds to wait when rate-limited."""
        ip = client_ip(request)
        limits = [(f"user:{name.casefold()}", self.USER_LIMIT), (f"ip:{ip}", self.IP_LIMIT)]
        attempt = await self.limiter.reserve(limits)
        if attempt.wait is not None:
            log.warning("dashboard login refused (rate limit) from %s", ip)
            return attempt.wait
        user = await on_loop(self.service, lambda: self.service.accounts.get_user(name))
        stored = user.password_hash if user is not None else dummy_hash()
        ok = await run_in_threadpool(verify_password, password, stored)
        if not ok or user is None:
            log.warning("dashboard login failed from %s", ip)
            return None  # the reserved attempt stays, as a failure
        await self.limiter.release(attempt)
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        key, now = session_key(sid), self.clock()
        await on_loop(self.service, lambda: self.service.accounts.create_session(
            key, user.name, csrf, now=now, expires_at=now + self.session_seconds))
        log.info("dashboard login (%s) from %s", user.role, ip)
        return sid, csrf

    async def logout(self, p: Principal) -> None:
        if p.session_key is not None:
            key = p.session_key
            await on_loop(self.service, lambda: self.service.accounts.delete_session(key))

    def set_session_cookie(self, request: Request, response: Response, sid: str) -> None:
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(self.session_seconds), path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")

    @staticmethod
    def clear_session_cookie(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

    @staticmethod
    def login_token(request: Request) -> str:
        """The double-submit token of the login form (kept while the cookie exists)."""
        return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)

    @staticmethod
    def set_login_cookie(request: Request, response: Response, token: str) -> None:
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/login", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
