"""The ``[alerts]`` section of hub.toml (hub.config loads and checks it with the rest)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct, field

HttpUrl = Annotated[str, Meta(pattern=r"^https?://\S+$")]
#: Where browsers' push subscriptions point (``[alerts] push_services``).
PUSH_SERVICES = ("fcm.googleapis.com", "push.services.mozilla.com", "push.apple.com", "notify.windows.com")

#: Every alert kind (hub/alerts/rules.py says what opens and clears each).
AlertKind = Literal["door_forced", "door_held", "reader_tamper", "reader_offline", "reader_error", "site_offline",
                    "storage_error", "clock_untrusted", "cache_stale", "lockdown", "denials", "sync_failing"]
#: Kinds that are reminded, escalated and never held back by quiet hours (the default).
URGENT: tuple[AlertKind, ...] = ("door_forced", "door_held", "reader_tamper", "site_offline", "storage_error",
                                 "lockdown", "denials")
ALL_KINDS: tuple[AlertKind, ...] = ("door_forced", "door_held", "reader_tamper", "reader_offline", "reader_error",
                                    "site_offline", "storage_error", "clock_untrusted", "cache_stale", "lockdown",
                                    "denials", "sync_failing")
Minutes = Annotated[float, Meta(gt=0, le=10080)]


class WebhookTarget(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[alerts.webhooks]]``: where alerts are POSTed as signed JSON (hub/alerts/webhooks.py)."""

    url: HttpUrl
    #: The shared secret that signs each request, in a file readable by its owner only.
    secret_file: Annotated[str, Meta(min_length=1)]


class AlertsSection(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Alerts by e-mail (hub/alerts); without this section the hub sends none."""

    smtp_host: Annotated[str, Meta(min_length=1, max_length=253)]
    #: Default: 587 with STARTTLS, else 25.
    smtp_port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    smtp_starttls: bool = True
    smtp_username: Annotated[str, Meta(min_length=1)] | None = None
    #: The SMTP password, in a file readable by its owner only.
    smtp_password_file: str | None = None
    #: The sender address.
    from_: Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$")] = field(name="from")
    #: A site offline longer than this raises an alert (fractions allowed).
    offline_minutes: Minutes = 10.0
    #: The dashboard's address as users reach it (the link in a message); default:
    #: ``http://`` + ``[http] listen``.
    dashboard_url: HttpUrl | None = None
    #: A message the server did not take is tried again after this many seconds,
    #: doubling up to ``retry_max_seconds``.
    retry_first_seconds: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    retry_max_seconds: Annotated[float, Meta(gt=0, le=86400)] = 600.0
    timeout_seconds: Annotated[float, Meta(gt=0, le=600)] = 20.0
    #: The kinds raised at all (default: every kind).
    kinds: list[AlertKind] = field(default_factory=lambda: list(ALL_KINDS))
    #: The kinds that are urgent: reminded and escalated when nobody acknowledges them, and
    #: never held back by a user's quiet hours.
    urgent: list[AlertKind] = field(default_factory=lambda: list(URGENT))
    #: An urgent alert not acknowledged this long goes to every admin as an escalation.
    escalate_minutes: Minutes = 15.0
    #: Its recipients get a reminder this often until someone acknowledges it or it clears,
    #: at most ``max_reminders`` times.
    remind_minutes: Minutes = 15.0
    max_reminders: Annotated[int, Meta(ge=0, le=100)] = 3
    #: A site's clock untrusted this long (``clock_untrusted``).
    clock_minutes: Minutes = 30.0
    #: A site online but not on the latest cache this long (``cache_stale``).
    cache_minutes: Minutes = 30.0
    #: ``denials`` (guessing): this many refused badges at one door within ``denials_minutes``;
    #: cleared when that door has had none for ``denials_minutes``.
    denials: Annotated[int, Meta(ge=2, le=10000)] = 5
    denials_minutes: Minutes = 5.0
    #: The push services browsers may name for Web Push (a host, or a domain and its
    #: subdomains): the hub POSTs to no other address, so no subscription can aim it at
    #: the hub's own network. Default: the browsers' own services (Google, Mozilla, Apple,
    #: Microsoft).
    push_services: list[Annotated[str, Meta(pattern=r"^[a-z0-9.-]+$", max_length=253)]] = field(
        default_factory=lambda: list(PUSH_SERVICES))
    #: The booking platform sync failing this many times in a row (``sync_failing``).
    sync_failures: Annotated[int, Meta(ge=1, le=10000)] = 3
    #: Signed webhooks that hear every alert (each URL once).
    webhooks: list[WebhookTarget] = []

    @property
    def port(self) -> int:
        return self.smtp_port if self.smtp_port is not None else (587 if self.smtp_starttls else 25)
