"""Who hears about an alert, in which language and when (pure; the alerter reads the
users and their settings from the store).

- A user hears about a site it may see (admins and caretakers without a site list: every
  site, and the hub itself, site ""), of the kinds it chose (default: every kind), on the
  channels it chose that it has an address for (``email``: an e-mail address; ``push``:
  each browser it subscribed, hub/alerts/webpush.py).
- A non-urgent message that falls into the user's quiet hours is queued to go out when
  they end (``not_before``); an urgent one never waits.
- An escalation goes to every admin with an address, whatever kinds it chose: that is
  what escalating is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..store import AlertPrefs, User
from .texts import LOCAL

DAY_MINUTES = 24 * 60


@dataclass(frozen=True, slots=True)
class Recipient:
    user: str
    #: An e-mail address (``email``) or a browser's push endpoint (``push``).
    address: str
    lang: str
    #: Held back until then (quiet hours); None: at once.
    not_before: float | None = None
    channel: str = "email"


#: Each user's Web Push endpoints (``Store.push_subscriptions``), by user name.
Endpoints = Mapping[str, Sequence[str]]


def _addresses(u: User, p: AlertPrefs, endpoints: Endpoints, hold: float | None) -> list[Recipient]:
    """Where ``u`` hears, on each channel it chose that it has an address for."""
    out = []
    if "email" in p.channels and u.email:
        out.append(Recipient(u.name, u.email, p.lang, hold))
    if "push" in p.channels:
        out += [Recipient(u.name, e, p.lang, hold, channel="push") for e in endpoints.get(u.name, ())]
    return out


def parse_quiet(text: str) -> tuple[int, int] | None:
    """``HH:MM-HH:MM`` as minutes after midnight (``""``/``off``: None); ValueError otherwise."""
    text = text.strip()
    if text in ("", "off", "-"):
        return None
    try:
        a, b = text.split("-")
        start, end = (dt.time.fromisoformat(x.strip()) for x in (a, b))
    except ValueError:
        raise ValueError(f"quiet hours {text!r}: not HH:MM-HH:MM") from None
    s, e = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    if s == e:
        raise ValueError(f"quiet hours {text!r}: start and end are the same")
    return s, e


def format_quiet(p: AlertPrefs) -> str:
    if p.quiet_start is None or p.quiet_end is None:
        return ""
    return f"{p.quiet_start // 60:02d}:{p.quiet_start % 60:02d}-{p.quiet_end // 60:02d}:{p.quiet_end % 60:02d}"


def quiet_until(p: AlertPrefs, now: float) -> float | None:
    """When the user's quiet hours end, if ``now`` is inside them (local time); else None."""
    if p.quiet_start is None or p.quiet_end is None:
        return None
    local = dt.datetime.fromtimestamp(now, LOCAL)
    minute = local.hour * 60 + local.minute
    s, e = p.quiet_start, p.quiet_end
    inside = s <= minute < e if s < e else (minute >= s or minute < e)
    if not inside:
        return None
    end_day = local.date() if minute < e else local.date() + dt.timedelta(days=1)
    end = dt.datetime.combine(end_day, dt.time(e // 60, e % 60), LOCAL)
    return end.timestamp()


def may_hear(u: User, site: str) -> bool:
    """The user may see ``site`` ("" is the hub: only users who see every site)."""
    return u.sites is None or site in u.sites


def hearers(users: Iterable[User], prefs: Mapping[str, AlertPrefs], site: str, kind: str, *, urgent: bool,
            now: float, endpoints: Endpoints | None = None) -> list[Recipient]:
    """Everyone who hears about ``kind`` at ``site``, once per channel address."""
    out = []
    for u in users:
        p = prefs.get(u.name) or AlertPrefs(user=u.name)
        if not may_hear(u, site) or (p.kinds is not None and kind not in p.kinds):
            continue
        out += _addresses(u, p, endpoints or {}, None if urgent else quiet_until(p, now))
    return out


def admins(users: Iterable[User], prefs: Mapping[str, AlertPrefs],
           endpoints: Endpoints | None = None) -> list[Recipient]:
    """Every admin, on its channels (escalations: no kind filter, no quiet hours)."""
    out = []
    for u in users:
        if u.role == "admin":
            out += _addresses(u, prefs.get(u.name) or AlertPrefs(user=u.name), endpoints or {}, None)
    return out


def make_prefs(user: str, *, lang: str = "de", kinds: str | None = None, channels: str = "email",
               quiet: str = "") -> AlertPrefs:
    """A user's settings from text (the CLI's options, the dashboard's form): ``kinds`` and
    ``channels`` comma-separated (``kinds`` None, ``""`` or ``*``: every kind; ``-``: none), ``quiet``
    ``HH:MM-HH:MM`` or empty. ValueError naming the field for anything else."""
    from ..store.alerts import CHANNELS, LANGUAGES
    from .rules import KINDS

    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r}: one of {', '.join(LANGUAGES)}")
    kind_list: tuple[str, ...] | None = None
    if kinds is not None and kinds.strip() == "-":
        kind_list = ()  # none at all
    elif kinds is not None and kinds.strip() not in ("", "*"):
        kind_list = tuple(dict.fromkeys(k.strip() for k in kinds.split(",") if k.strip()))
        bad = [k for k in kind_list if k not in KINDS]
        if bad:
            raise ValueError(f"alert kind {bad[0]!r}: one of {', '.join(KINDS)}")
    chans = tuple(dict.fromkeys(c.strip() for c in channels.split(",") if c.strip()))
    bad = [c for c in chans if c not in CHANNELS]
    if bad:
        raise ValueError(f"channel {bad[0]!r}: one of {', '.join(CHANNELS)}")
    q = parse_quiet(quiet)
    return AlertPrefs(user=user, lang=lang, kinds=kind_list, channels=chans,
                      quiet_start=None if q is None else q[0], quiet_end=None if q is None else q[1])
