"""What the hub's acts refuse with (``hub.core``): each a HubError, so that the command
line reports it as ``error: ...`` with exit status 1; the dashboard turns each into its
HTTP status."""

from __future__ import annotations

from ..errors import HubError


class UnknownSite(HubError):
    """The site is not in the hub's configuration."""


class BadCommand(HubError):
    """A command could not be built from what was asked (the message says why)."""


class NotSent(HubError):
    """The broker connection is down: nothing was published."""


class SiteRevoked(HubError):
    """The site is revoked or removed (``torwart-hub site revoke``): nothing is sent to it."""

    def __init__(self, site: str, state: str) -> None:
        super().__init__(f"site {site!r} is {state}: nothing is sent to it (torwart-hub site reinstate {site})")
        self.site = site


class InLockdown(HubError):
    """An unlock at a site whose last status reported a lockdown: refused before anything
    is sent (ending the lockdown is a separate act)."""

    def __init__(self, site: str) -> None:
        super().__init__(f"site {site!r} is in lockdown")
        self.site = site


class NoEnrollKey(HubError):
    """This hub process has no enrollment key, so it could not open a site's sealed read."""
