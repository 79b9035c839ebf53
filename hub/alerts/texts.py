"""The alert messages, in German (the default) and English (each user's choice, hub/alerts
/audience.py): a subject naming the site, the kind and the door or reader, and a body with
the time (UTC and Europe/Berlin) and a link to the site's dashboard page, where it can be
acknowledged. ``what`` is ``opened``, ``resolved``, ``reminder`` (still not acknowledged)
or ``escalated`` (to the admins: nobody acknowledged it)."""

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
        "storage_error": "Speicherfehler am Standort",
        "clock_untrusted": "Uhr des Standorts nicht verlässlich",
        "cache_stale": "Standort nicht auf dem neuesten Stand der Zutrittsliste",
        "lockdown": "alle Türen gesperrt (Lockdown)",
        "denials": "Wiederholt abgewiesene Karten an Tür {s}",
        "sync_failing": "Abgleich mit der Buchungsplattform schlägt fehl",
    },
    "en": {
        "door_forced": "door {s} forced open",
        "door_held": "door {s} held open",
        "reader_tamper": "reader {s} tampered with",
        "reader_offline": "reader {s} offline",
        "reader_error": "reader {s} error",
        "site_offline": "site offline",
        "storage_error": "storage error at the site",
        "clock_untrusted": "site clock not trusted",
        "cache_stale": "site not on the latest access list",
        "lockdown": "all doors locked (lockdown)",
        "denials": "repeated refused cards at door {s}",
        "sync_failing": "booking platform sync failing",
    },
}
_WORDS = {
    "de": {"opened": "Alarm", "resolved": "Behoben", "reminder": "Erinnerung", "escalated": "Eskalation",
           "lockdown_opened": "Sperre begonnen", "lockdown_resolved": "Sperre beendet",
           "unacked": "Noch von niemandem bestätigt. Bestätigen auf der Standortseite.",
           "escalation": "Niemand hat diesen Alarm bestätigt; er geht deshalb an alle Admins.",
           "since": "seit", "at": "Zeit", "detail": "Details",
           "page": "Standortseite", "footer": "Diese Nachricht kommt vom Torwart-Hub. Sie kommt einmal je "
           "Vorfall; wenn er behoben ist, folgt eine kurze Nachricht."},
    "en": {"opened": "Alert", "resolved": "Resolved", "reminder": "Reminder", "escalated": "Escalation",
           "lockdown_opened": "Lockdown started", "lockdown_resolved": "Lockdown ended",
           "unacked": "Nobody has acknowledged it yet. Acknowledge it on the site page.",
           "escalation": "Nobody acknowledged this alert, so it goes to every admin.",
           "since": "since", "at": "Time", "detail": "Details",
           "page": "Site page", "footer": "This message comes from the Torwart hub, once per occurrence; "
           "a short message follows when it is resolved."},
}
LANGUAGES = tuple(_KIND)
#: Each kind's headline in German and English (``{s}``: the door or reader).
KIND_NAMES: dict[str, tuple[str, str]] = {k: (_KIND["de"][k], _KIND["en"][k]) for k in _KIND["de"]}


def _when(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return f"{t.astimezone(LOCAL):%Y-%m-%d %H:%M:%S %Z} ({t:%H:%M:%S} UTC)"


def compose(*, what: str, kind: str, subject: str, site_id: str, site_name: str, at: float, link: str,
            recipient: str, detail: str | None = None, lang: str = "de",
            not_before: float | None = None) -> OutMail:
    """One recipient's message (``what``: opened, resolved, reminder, escalated), held
    back until ``not_before`` (None: sent at once). Site "" is the hub itself."""
    words, kinds = _WORDS[lang], _KIND[lang]
    name = site_name or site_id or "Hub"
    headline = kinds[kind].format(s=subject)
    label = words.get(f"{kind}_{what}", words[what])
    mail_subject = f"[Torwart] {label}: {name}: {headline}"
    lines = [f"{label}: {headline}", f"{name} ({site_id})" if site_id else name, f"{words['at']}: {_when(at)}"]
    if detail:
        lines.append(f"{words['detail']}: {detail}")
    if what in ("reminder", "escalated"):
        lines += ["", words["escalation"] if what == "escalated" else words["unacked"]]
    lines += ["", f"{words['page']}: {link}", "", words["footer"]]
    return OutMail(recipient=recipient, subject=mail_subject, body="\n".join(lines) + "\n", not_before=not_before)
