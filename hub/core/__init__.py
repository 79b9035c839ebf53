"""The hub's application core: one object, ``Hub``, whose methods are the hub's acts.

- push a site's cache: ``changed`` / ``rebuild`` after a change, ``push`` now,
  ``push_and_wait`` (command line), and following what sites hold (``converge``,
  ``converge_all``, ``watch_versions``, ``cache_refused``, ``unissued``);
- send a signed command: ``send_command`` (running hub), ``command_and_wait`` (command
  line), ``in_lockdown``;
- enroll a card at a site: ``start_enrollment``, ``enrollment``, ``enrollment_acked``,
  ``on_enroll_read``, ``enroll_at_site``;
- members, credentials, grants, accounts: ``add_card``, ``import_cards``, ``remove_card``,
  ``cards``, ``add_grant``, ``remove_grant``, ``grants``, ``add_user``, ``users``,
  ``remove_user``, ``event_log``;
- a member's data (GDPR): ``export_member``, ``erase_member`` (running hub),
  ``erase_and_wait`` (command line);
- bookings: ``sync``, ``sync_now``, ``apply_push``;
- the audit trail (``audit.py``): each act above that a person does is recorded once, as
  the current ``actor`` (``acting_as``, ``run_as``; the command line's is ``cli:<user>``),
  by ``audited``; ``record_act`` for a refusal made before an act, or an act of its own
  (an alert's acknowledgement); ``audit_log``;
- exports (``export.py``): ``event_export_page``, ``audit_export_page`` (CSV rows a page at
  a time), ``failing_deliveries`` (alert messages not delivered yet);
- what is shown: ``snapshot``, ``summary``, ``event_views``, ``noshows``, ``overview``;
- "is this a configured site?": ``site`` and ``knows``.

The running hub (``hub.service``) builds one with its link and loop; the command line
uses ``open_hub``; the dashboard holds the running hub's.
"""

from __future__ import annotations

from .base import Accounts, each_site
from .errors import BadCommand, InLockdown, NoEnrollKey, NotSent, UnknownSite
from .hub import Hub, open_hub
from .people import CRED_TYPES, parse_credential
from .privacy import Erasure, SiteAck
from .push import Result

__all__ = [
    "CRED_TYPES",
    "Accounts",
    "BadCommand",
    "Erasure",
    "Hub",
    "InLockdown",
    "NoEnrollKey",
    "NotSent",
    "Result",
    "SiteAck",
    "UnknownSite",
    "each_site",
    "open_hub",
    "parse_credential",
]
