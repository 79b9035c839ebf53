"""The alert messages, in German (the default: users have no language setting yet) and
English: a subject naming the site, the kind and the door or reader, and a body with the
time (UTC and Europe/Berlin) and a link to the site's dashboard page."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ..store import OutMail

LOCAL = ZoneInfo("Europe/Berlin")

_KIND = {
    "de": {
        "door_forced": "Tür {s} aufgebrochen",
        "door_held": "Tür {s} zu lange offen",
        "reader_tamper": "Sabotage am Leser {s}",
        "reader_offline": "Leser {s} antwortet nicht",
        "reader_error": "Fehler am Leser {s}",
        "site_offline": "Standort offline",
    },
    "en": {
        "door_forced": "door {s} forced open",
        "door_held": "door {s} held open",
        "reader_tamper": "reader {s} tampered with",
        "reader_offline": "reader {s} offline",
        "reader_error": "reader {s} error",
        "site_offline": "site offline",
    },
}
_WORDS = {
    "de": {"opened": "Alarm", "resolved": "Behoben", "since": "seit", "at": "Zeit", "detail": "Details",
           "page": "Standortseite", "footer": "Diese Nachricht kommt vom Torwart-Hub. Sie kommt einmal je "
           "Vorfall; wenn er behoben ist, folgt eine kurze Nachricht."},
    "en": {"opened": "Alert", "resolved": "Resolved", "since": "since", "at": "Time", "detail": "Details",
           "page": "Site page", "footer": "This message comes from the Torwart hub, once per occurrence; "
           "a short message follows when it is resolved."},
}
LANGUAGES = tuple(_KIND)


def _when(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return f"{t.astimezone(LOCAL):%Y-%m-%d %H:%M:%S %Z} ({t:%H:%M:%S} UTC)"


def compose(*, what: str, kind: str, subject: str, site_id: str, site_name: str, at: float, link: str,
            recipient: str, detail: str | None = None, lang: str = "de") -> OutMail:
    """One recipient's message: ``what`` is ``opened`` or ``resolved``."""
    words, kinds = _WORDS[lang], _KIND[lang]
    name = site_name or site_id
    headline = kinds[kind].format(s=subject)
    mail_subject = f"[Torwart] {words[what]}: {name}: {headline}"
    lines = [f"{words[what]}: {headline}", f"{name} ({site_id})", f"{words['at']}: {_when(at)}"]
    if detail:
        lines.append(f"{words['detail']}: {detail}")
    lines += ["", f"{words['page']}: {link}", "", words["footer"]]
    return OutMail(recipient=recipient, subject=mail_subject, body="\n".join(lines) + "\n")
