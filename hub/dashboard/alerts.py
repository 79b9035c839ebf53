"""Alerts in the dashboard: the list of open and recent alerts (per site on its page, for
the county on ``/alerts``, as JSON under ``/api/v1/alerts``), acknowledging one with one
tap, and each user's alert settings (``/settings/alerts``, ``/api/v1/me/alerts``).

Who may do what: a user sees and acknowledges the alerts of the sites it may see
(caretakers their own; another site's alert answers 404, as if it did not exist); alerts
of the hub itself (site "", the booking sync) only users who see every site. Every user
sets its own settings; the admin token has no user and gets 403. The POSTs carry the
session's CSRF token (checked by ``hub.dashboard.middleware.LoginGuard``). The pages
update live: a change to a site's alerts notifies its subscribers (``hub.live``), and the
live stream's ``view=alerts`` sends the site's part of the alerts page.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..alerts import audience
from ..alerts.rules import KINDS
from ..core.alerting import RECENT_ALERTS
from ..core.pages import AlertView
from ..store import AlertPrefs
from .alertmodel import EMAIL, AckForm, AlertSettings, AlertSettingsBody, AlertsQuery
from .auth import Auth, Principal
from .common import error, json, on_loop
from .middleware import principal
from .model import BadRequest, parse, parse_json, parse_time
from .render import page

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)


def _safe_next(target: str | None, default: str) -> str:
    """Only paths of this hub (no ``//host`` or scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _alert_id(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def settings_view(prefs: AlertPrefs, email: str | None) -> AlertSettings:
    return AlertSettings(user=prefs.user, email=email, lang=prefs.lang,  # type: ignore[arg-type]
                         kinds=None if prefs.kinds is None else list(prefs.kinds),  # type: ignore[arg-type]
                         channels=list(prefs.channels), quiet=audience.format_quiet(prefs))  # type: ignore[arg-type]


class Alerts:
    """The alert routes' handlers (API ones take the caller; pages read it)."""

    def __init__(self, hub: Hub, auth: Auth) -> None:
        self.hub = hub
        self.auth = auth
        self.cfg = hub.cfg

    def _visible(self, p: Principal) -> list[str]:
        return [s.id for s in self.cfg.sites if p.may_see(s.id)]

    def _list(self, p: Principal, q: AlertsQuery) -> tuple[list[str] | None, float | None] | str:
        """The sites and time to list for ``q`` (None: every site), or why not (404)."""
        visible = self._visible(p)
        if q.site and q.site not in visible:
            return f"no site {q.site!r}"
        try:
            since = parse_time(q.since, "since")
        except BadRequest as exc:
            raise BadRequest(str(exc)) from None
        return ([q.site] if q.site else (None if p.sites is None else visible)), since

    # --- API ---------------------------------------------------------------------------------

    async def api_list(self, request: Request, p: Principal) -> Response:
        """Alerts of the caller's sites, newest first; filters: site, kind, state, since, limit."""
        q = parse(dict(request.query_params), AlertsQuery, what="the query")
        chosen = self._list(p, q)
        if isinstance(chosen, str):
            return error(404, chosen)
        sites, since = chosen
        return json(await on_loop(self.hub, lambda: self.hub.alert_list(
            sites, kind=q.kind or None, open_only=q.state == "open", since=since, limit=q.limit)))

    async def _ack(self, p: Principal, text: str) -> AlertView | None:
        alert_id = _alert_id(text)
        if alert_id is None:
            return None
        return await on_loop(self.hub, lambda: self.hub.acknowledge_alert(alert_id, p.name, p.may_see))

    async def api_ack(self, request: Request, p: Principal) -> Response:
        """Acknowledge an alert (its reminders and escalation stop); the first one stands."""
        view = await self._ack(p, request.path_params["alert"])
        if view is None:
            return error(404, f"no alert {request.path_params['alert']!r}")
        return json(view)

    async def _settings(self, p: Principal) -> AlertSettings | None:
        def read() -> AlertSettings | None:
            user = self.hub.user(p.name)
            if user is None or p.session_key is None:
                return None
            return settings_view(self.hub.alert_settings(p.name), user.email)

        return await on_loop(self.hub, read)

    async def api_me_alerts(self, request: Request, p: Principal) -> Response:
        """The caller's alert settings: GET reads them, POST replaces them (one route, so
        that a 405 names both methods)."""
        if request.method == "POST":
            return await self.api_set_settings(request, p)
        return await self.api_settings(request, p)

    async def api_settings(self, request: Request, p: Principal) -> Response:
        """The caller's alert settings."""
        doc = await self._settings(p)
        return error(403, "the admin token has no alert settings; log in as a user") if doc is None else json(doc)

    async def api_set_settings(self, request: Request, p: Principal) -> Response:
        """Replace the caller's alert settings."""
        body = parse_json(await request.body(), AlertSettingsBody)
        if await self._settings(p) is None:
            return error(403, "the admin token has no alert settings; log in as a user")
        prefs = audience.make_prefs(p.name, lang=body.lang,
                                    kinds=None if body.kinds is None else ",".join(body.kinds) or "-",
                                    channels=",".join(body.channels), quiet=body.quiet)
        await on_loop(self.hub, lambda: self._save(prefs, body.email))
        return json(await self._settings(p))

    def _save(self, prefs: AlertPrefs, email: str | None) -> None:
        """On the main loop: the settings, and the address unless None ("": none)."""
        self.hub.set_alert_settings(prefs)
        if email is not None:
            self.hub.set_user_email(prefs.user, email or None)

    # --- pages -------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        """``/alerts``: open alerts and those of the last 24 hours (or since ``since``) of the
        caller's sites, by site, with filters; live unless ``since`` is given."""
        p = principal(request)
        try:
            q = parse(dict(request.query_params), AlertsQuery, what="the query")
            chosen = self._list(p, q)
        except BadRequest:
            return page(request, "error.html", {"message_key": "bad_request", "status": 400}, user=p, status=400)
        if isinstance(chosen, str):
            return page(request, "error.html", {"message_key": "not_found", "status": 404}, user=p, status=404)
        sites, since = chosen
        live = since is None  # the live stream sends what a site's page shows: open and last 24 h
        if live:
            since = time.time() - RECENT_ALERTS
        shown = [q.site] if q.site else self._visible(p)
        rows = await on_loop(self.hub, lambda: self.hub.alert_list(
            sites, kind=q.kind or None, open_only=q.state == "open", since=since, limit=q.limit))
        by_site: dict[str, list[AlertView]] = {s: [] for s in shown}
        hub_own = [a for a in rows if a.site == ""]
        for a in rows:
            if a.site in by_site:
                by_site[a.site].append(a)
        filters = {k: v for k, v in (("kind", q.kind), ("state", q.state if q.state != "all" else None)) if v}
        return page(request, "alerts.html", {
            "groups": [{"id": s, "name": self.cfg.site(s).name or s, "alerts": by_site[s]} for s in shown],
            "hub_alerts": hub_own, "kinds": KINDS, "q": {"site": q.site or "", "kind": q.kind or "",
                                                         "state": q.state},
            "sites": [{"id": s, "name": self.cfg.site(s).name or s} for s in self._visible(p)],
            "live_url": "/api/v1/live?" + urlencode({"view": "alerts", **({"site": q.site} if q.site else {}),
                                                     **filters}) if live else None,
            "title_key": "alerts",
        }, user=p)

    async def ack(self, request: Request) -> Response:
        """The page's one-tap button: acknowledge, then back to where it was pressed."""
        p = principal(request)
        try:
            form = parse(dict(await request.form()), AckForm, what="the form")
        except BadRequest:
            form = AckForm()
        view = await self._ack(p, request.path_params["alert"])
        if view is None:
            return page(request, "error.html", {"message_key": "not_found", "status": 404}, user=p, status=404)
        return RedirectResponse(_safe_next(form.next, "/alerts"), status_code=303)

    async def settings_page(self, request: Request, *, message: str | None = None, status: int = 200,
                            values: dict[str, Any] | None = None) -> Response:
        """``/settings/alerts``: what the user hears, on which channel, in which language, quiet hours."""
        p = principal(request)
        doc = await self._settings(p)
        if doc is None:
            return page(request, "error.html", {"message_key": "forbidden", "status": 403}, user=p, status=403)
        return page(request, "alert_settings.html", {
            "settings": values or {"lang": doc.lang, "kinds": doc.kinds, "channels": doc.channels,
                                   "quiet": doc.quiet, "email": doc.email or ""},
            "email": doc.email, "kinds": KINDS, "message": message, "title_key": "alert_settings",
            "browsers": [{"host": urlsplit(b.endpoint).netloc, "last_error": b.last_error}
                         for b in await on_loop(self.hub, lambda: self.hub.push_browsers(p.name))],
        }, user=p, status=status)

    async def save_settings(self, request: Request) -> Response:
        """The settings form: every kind ticked means every kind (also those added later)."""
        p = principal(request)
        form = await request.form()
        kinds = [str(k) for k in form.getlist("kinds")]
        channels = [str(c) for c in form.getlist("channels")]
        lang, quiet = str(form.get("lang", "de")), str(form.get("quiet", ""))
        email = str(form.get("email", "")).strip()
        values = {"lang": lang, "kinds": kinds, "channels": channels, "quiet": quiet, "email": email}
        try:
            prefs = audience.make_prefs(p.name, lang=lang, quiet=quiet, channels=",".join(channels),
                                        kinds="*" if set(kinds) >= set(KINDS) else ",".join(kinds) or "-")
            if not re.match(EMAIL, email):
                raise ValueError(f"e-mail {email!r}: not an e-mail address (NAME@DOMAIN)")
        except ValueError as exc:
            return await self.settings_page(request, message=str(exc), status=400, values=values)
        if await self._settings(p) is None:
            return page(request, "error.html", {"message_key": "forbidden", "status": 403}, user=p, status=403)
        await on_loop(self.hub, lambda: self._save(prefs, email))
        log.info("dashboard: %s changed its alert settings at %.0f", p.name, time.time())
        return RedirectResponse("/settings/alerts?saved=1", status_code=303)
