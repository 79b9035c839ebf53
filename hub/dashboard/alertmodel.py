"""The msgspec types of the dashboard's alert routes (``hub.dashboard.alerts``): the list's
filters, the acknowledge form, and a user's alert settings. Parsed with
``hub.dashboard.model.parse``; the OpenAPI document is generated from them."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from ..alerts.settings import AlertKind

#: An e-mail address, roughly (as ``torwart-hub users add --email`` checks it), or empty.
EMAIL = r"^$|^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
#: The most alerts one ``GET /api/v1/alerts`` answers.
MAX_ALERTS = 1000
Quiet = Annotated[str, Meta(pattern=r"^$|^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
                            description="quiet hours HH:MM-HH:MM (local time; may cross midnight), empty: none")]


class AlertsQuery(Struct, kw_only=True):
    """``GET /api/v1/alerts`` and the alerts page: filters."""

    site: Annotated[str, Meta(description="one site (empty: every site)")] | None = None
    kind: Annotated[AlertKind | Literal[""], Meta(description="one alert kind (empty: every kind)")] = ""
    state: Annotated[Literal["open", "all"], Meta(description="open: not yet resolved; all: also resolved")] = "all"
    since: Annotated[str, Meta(description="Unix seconds or ISO 8601: opened or resolved since (open ones always)")] \
        | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_ALERTS, description="the most alerts to answer")] = 100


class AckForm(Struct, kw_only=True):
    """``POST /alerts/{alert}/ack`` (the page's button): where to go back to."""

    next: str = "/alerts"


class AlertSettingsBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/me/alerts``: what the caller hears. ``kinds`` null: every kind."""

    lang: Annotated[Literal["de", "en"], Meta(description="the messages' language")] = "de"
    kinds: Annotated[list[AlertKind], Meta(description="the kinds to hear about (null: every kind)")] | None = None
    channels: Annotated[list[Literal["email", "push"]], Meta(description="where to hear it (push: the "
                                                                          "browsers subscribed)")] = \
        field(default_factory=lambda: ["email"])
    quiet: Quiet = ""
    email: Annotated[str, Meta(pattern=EMAIL, description="where e-mails go; empty: nowhere; absent: unchanged")] \
        | None = None


class AlertSettings(Struct, kw_only=True):
    """A user's alert settings, and the address its e-mails go to (null: none, so none go)."""

    user: str
    email: str | None
    lang: Literal["de", "en"]
    kinds: list[AlertKind] | None
    channels: list[Literal["email", "push"]]
    quiet: Quiet


class PushKeys(Struct, kw_only=True, forbid_unknown_fields=True):
    p256dh: Annotated[str, Meta(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+=*$",
                                description="the browser's P-256 public key, base64url")]
    auth: Annotated[str, Meta(min_length=16, max_length=32, pattern=r"^[A-Za-z0-9_-]+=*$",
                              description="the 16-byte auth secret, base64url")]


class PushSubscribeBody(Struct, kw_only=True):
    """``POST /api/v1/me/push``: a browser's ``PushSubscription.toJSON()``."""

    endpoint: Annotated[str, Meta(pattern=r"^https?://\S+$", max_length=2048, description="the push service URL")]
    keys: PushKeys
    expirationTime: float | None = None


class PushUnsubscribeBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """``DELETE /api/v1/me/push``: the browser to forget."""

    endpoint: Annotated[str, Meta(max_length=2048)]


class PushBrowser(Struct, kw_only=True):
    """One subscribed browser, as its user sees it (the endpoint's host only)."""

    host: str
    since: float
    last_ok: float | None
    last_error: str | None


class PushState(Struct, kw_only=True):
    """The hub's VAPID public key (null: Web Push not set up) and the caller's browsers."""

    public_key: str | None
    browsers: list[PushBrowser]
