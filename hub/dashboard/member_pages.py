"""The member pages of the dashboard (admins only; caretakers get 403): GDPR access and
erasure as dashboard actions, the same acts as ``torwart-hub members export|remove`` and
the JSON API (``hub.dashboard.members``).

- ``GET /members``: the members (id, name, e-mail, number of credentials, PIN set or not),
  by id; ``q`` searches id and name (case-insensitive), at most ``LIMIT`` shown;
- ``GET /members/{member}/export.json``: the access request's answer (``Hub.export_member``)
  as a JSON attachment;
- ``POST /members/{member}/erase``: the confirm step first (a page naming the member), the
  second POST (``confirmed=1``) erases (``Hub.erase_member``: the running hub publishes the
  changed caches at once) and goes back to ``/members?erased=ID``.

Every POST needs the session's CSRF token (``hub.dashboard.middleware.LoginGuard``). The
export and the erasure are recorded in the audit trail once each, as the logged-in user's
(``members.export``, ``members.erase``), and so are refusals (403, 404) of a download or
an erasure; an unknown member answers 404.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlencode

from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import members
from .auth import Principal
from .common import on_loop
from .middleware import principal
from .model import BadRequest, parse
from .render import page

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger(__name__)

#: Most members one page lists (a search narrows it down).
LIMIT = 500

Text = Annotated[str, Meta(max_length=200)]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class MembersQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """``GET /members``: the search, and the member just erased (for the notice)."""

    q: Text = ""
    erased: Text | None = None
    lang: Literal["de", "en"] | None = None


class EraseForm(Struct, kw_only=True):
    """``POST /members/{member}/erase``: ``confirmed=1`` on the confirm step's form."""

    csrf: str = ""
    confirmed: str = ""


def _filename(member: str) -> str:
    return f"torwart-member-{_UNSAFE.sub('_', member)[:64]}.json"


class MemberPages:
    """The handlers (see the module's docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _error(self, request: Request, p: Principal, status: int, message: str | None = None) -> Response:
        key = {404: "not_found", 400: "bad_request"}.get(status, "forbidden")
        ctx: dict[str, object] = {"message_key": key, "status": status}
        if message:
            ctx["message"] = message
        return page(request, "error.html", ctx, user=p, status=status)

    async def list(self, request: Request) -> Response:
        p = principal(request)
        if not p.admin:
            return self._error(request, p, 403)
        try:
            q = parse(dict(request.query_params), MembersQuery, what="the query")
        except BadRequest as exc:
            return self._error(request, p, 400, str(exc))
        rows, total = await on_loop(self.hub, lambda: self.hub.member_list(q.q, limit=LIMIT))
        return page(request, "members.html", {
            "rows": rows, "total": total, "q": q.q, "erased": q.erased, "title_key": "members",
        }, user=p)

    async def export(self, request: Request) -> Response:
        p = principal(request)
        member = request.path_params["member"]
        out = await members.export(self.hub, p, member)
        if not out.ok:
            return self._error(request, p, out.status, out.doc.get("error"))
        body = json.dumps(out.doc, ensure_ascii=False, indent=2) + "\n"
        return Response(body.encode("utf-8"), media_type="application/json; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{_filename(member)}"'})

    async def erase(self, request: Request) -> Response:
        """The first POST shows the confirm step, the second (``confirmed=1``) erases."""
        p = principal(request)
        member = request.path_params["member"]
        try:
            form = parse(dict(await request.form()), EraseForm, what="the form")
        except BadRequest as exc:
            return self._error(request, p, 400, str(exc))
        if form.confirmed != "1":
            refused = await members.refused(self.hub, p, member, "members.erase")
            if refused is not None:
                return self._error(request, p, refused.status, refused.doc.get("error"))
            mb = await on_loop(self.hub, lambda: self.hub.member(member))
            if mb is None:  # erased in between
                return self._error(request, p, 404)
            return page(request, "member_confirm.html", {"member": {"id": mb.id, "name": mb.display_name}},
                        user=p)
        out = await members.erase(self.hub, p, member)
        if not out.ok:
            return self._error(request, p, out.status, out.doc.get("error"))
        return RedirectResponse("/members?" + urlencode({"erased": member}), status_code=303)
