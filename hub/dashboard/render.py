"""Jinja2 templates of the dashboard (autoescaped) and the helpers every page gets:
``t`` (i18n), ``when``/``ago`` (times), the user, the CSRF token and the language switch.

Page data (``hub.dashboard.model``) reaches the templates as the API shows it (plain JSON
values: a field the viewer may not see is absent, ``is defined`` in a template), so that a
page and the API never disagree. The security headers are added by
``hub.dashboard.middleware.SecurityHeaders`` to every response."""

from __future__ import annotations

import datetime as dt
import functools
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from . import i18n
from .auth import Principal

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
)
templates = Jinja2Templates(env=env)


def lang_of(request: Request) -> str:
    return i18n.pick(request.query_params.get("lang"), request.cookies.get("lang"))


def _iso(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def helpers(lang: str, now: float | None = None) -> dict[str, Any]:
    """What every template (page or live fragment) may call."""
    n = time.time() if now is None else now
    return {
        "lang": lang, "now": n,
        "t": functools.partial(i18n.t, lang),
        "when": functools.partial(i18n.when, lang),
        "ago": lambda ts: i18n.ago(lang, ts, n),
        "iso": _iso,
        "weekday": lambda day: i18n.weekday(lang, dt.date.fromisoformat(day)),
    }


def plain(value: Any) -> Any:
    """Page data (a msgspec Struct, or a list or tuple of them) as the API shows it;
    anything else as it is."""
    if isinstance(value, msgspec.Struct) or (isinstance(value, list | tuple) and value
                                             and isinstance(value[0], msgspec.Struct)):
        return msgspec.to_builtins(value)
    return value


def fragment(name: str, lang: str, **ctx: Any) -> str:
    """A partial template rendered to a string (for the live stream)."""
    return env.get_template(name).render(**helpers(lang), **{k: plain(v) for k, v in ctx.items()})


def page(request: Request, name: str, ctx: dict[str, Any], *, user: Principal | None, status: int = 200,
         headers: dict[str, str] | None = None) -> Response:
    """A full page; ``?lang=`` also sets the ``lang`` cookie."""
    lang = lang_of(request)
    other = "en" if lang == "de" else "de"
    keep = {k: v for k, v in request.query_params.items() if k not in ("lang", "sent", "failed")}
    full = {
        **helpers(lang), "request": request, "user": user, "csrf": user.csrf if user else None,
        "lang_url": request.url.path + "?" + urlencode({**keep, "lang": other}),
        "live_url": None, **{k: plain(v) for k, v in ctx.items()},
    }
    resp = templates.TemplateResponse(request, name, full, status_code=status, headers=headers)
    if request.query_params.get("lang") in i18n.LANGS:
        resp.set_cookie("lang", lang, max_age=365 * 86400, path="/", samesite="lax")
    return resp
