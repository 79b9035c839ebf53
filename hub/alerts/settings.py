"""The ``[alerts]`` section of hub.toml (hub.config loads and checks it with the rest)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct, field

HttpUrl = Annotated[str, Meta(pattern=r"^https?://\S+$")]


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
    offline_minutes: Annotated[float, Meta(gt=0, le=10080)] = 10.0
    #: The dashboard's address as users reach it (the link in a message); default:
    #: ``http://`` + ``[http] listen``.
    dashboard_url: HttpUrl | None = None
    #: A message the server did not take is tried again after this many seconds,
    #: doubling up to ``retry_max_seconds``.
    retry_first_seconds: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    retry_max_seconds: Annotated[float, Meta(gt=0, le=86400)] = 600.0
    timeout_seconds: Annotated[float, Meta(gt=0, le=600)] = 20.0
    #: Signed webhooks that hear every alert (each URL once).
    webhooks: list[WebhookTarget] = []

    @property
    def port(self) -> int:
        return self.smtp_port if self.smtp_port is not None else (587 if self.smtp_starttls else 25)
