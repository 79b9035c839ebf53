"""Every string of the dashboard's pages, German first, English second.

The language comes from ``?lang=de|en`` (which also sets the ``lang`` cookie), else the
cookie, else German: the caretakers are in Minheim. Templates call ``t("key", **values)``;
times are shown absolute and relative (the page refreshes the relative ones itself with
the browser's ``Intl.RelativeTimeFormat``).
"""

from __future__ import annotations

import datetime as dt

from .i18n_alerts import STRINGS as ALERT_STRINGS
from .i18n_members import STRINGS as MEMBER_STRINGS

LANGS = ("de", "en")
DEFAULT = "de"

#: key → (German, English)
STRINGS: dict[str, tuple[str, str]] = {
    "app": ("Torwart", "Torwart"),
    "overview": ("Übersicht", "Overview"),
    "login": ("Anmelden", "Log in"),
    "logout": ("Abmelden", "Log out"),
    "username": ("Benutzername", "User name"),
    "password": ("Passwort", "Password"),
    "login_failed": ("Benutzername oder Passwort falsch.", "Wrong user name or password."),
    "login_limited": ("Zu viele Fehlversuche. Bitte in {seconds} s erneut versuchen.",
                      "Too many failed attempts. Please try again in {seconds} s."),
    "login_stale": ("Das Formular war abgelaufen. Bitte noch einmal anmelden.",
                    "The form had expired. Please log in again."),
    "role_admin": ("Admin", "Admin"),
    "role_caretaker": ("Hausmeisterei", "Caretaker"),
    "lang_other": ("English", "Deutsch"),
    "online": ("online", "online"),
    "offline": ("offline", "offline"),
    "never_seen": ("noch nie verbunden", "never connected"),
    "since": ("seit", "since"),
    "stale": ("Letzter bekannter Stand", "Last known state"),
    "last_seen": ("zuletzt gemeldet", "last report"),
    "no_sites": ("Keine Standorte freigegeben.", "No sites to show."),
    "rooms": ("Räume", "Rooms"),
    "present_of": ("{present} von {capacity}", "{present} of {capacity}"),
    "present_n": ("{present} anwesend", "{present} present"),
    "full": ("voll", "full"),
    "nobody": ("niemand da", "nobody in"),
    "names_hidden": ("Namen sehen nur Admins.", "Only admins see names."),
    "doors": ("Türen", "Doors"),
    "locked": ("verriegelt", "locked"),
    "unlocked": ("entriegelt", "unlocked"),
    "open": ("offen", "open"),
    "closed": ("zu", "closed"),
    "no_contact": ("ohne Kontakt", "no contact"),
    "door_unknown": ("kein Zustand gemeldet", "no state reported"),
    "alarm_held_open": ("Tür zu lange offen", "Door held open"),
    "alarm_forced_open": ("Tür aufgebrochen", "Door forced open"),
    "alarms": ("Alarme", "Alarms"),
    "mode_normal": ("normal", "normal"),
    "mode_office_hours": ("Bürozeit", "office hours"),
    "mode_lockdown": ("gesperrt", "lockdown"),
    "lockdown_active": ("Sperre aktiv: keine Karte öffnet eine Tür", "Lockdown: no badge opens a door"),
    "status": ("Zustand", "Status"),
    "cache": ("Zutrittsliste", "Access list"),
    "cache_published": ("Hub", "Hub"),
    "cache_applied": ("vor Ort", "at the site"),
    "cache_current": ("aktuell", "up to date"),
    "cache_behind": ("nicht aktuell", "behind"),
    "cache_none": ("keine", "none"),
    "built": ("erstellt", "built"),
    "expires": ("gültig bis", "valid until"),
    "clock": ("Uhr", "Clock"),
    "clock_ok": ("synchron (NTP)", "synchronised (NTP)"),
    "clock_bad_short": ("nicht vertrauenswürdig", "not trusted"),
    "clock_bad": ("nicht vertrauenswürdig: Buchungen öffnen keine Tür", "not trusted: bookings open no door"),
    "outbox": ("Ereignisse unterwegs", "events in transit"),
    "stream_reset": ("Standort wurde neu aufgesetzt am {when} (neuer Ereignisstrom {new}); der vorige Strom {old} "
                     "ist bis Nr. {acked} bestätigt.",
                     "Site was reset at {when} (new event stream {new}); previous stream {old} acknowledged up "
                     "to no. {acked}."),
    "stream_odd": ("{unknown} Ereignisse unbekannter Art gespeichert, {quarantined} fehlerhafte Meldungen "
                   "beiseitegelegt.",
                   "{unknown} events of unknown type stored, {quarantined} malformed messages kept aside."),
    "events": ("Letzte Ereignisse", "Last events"),
    "no_events": ("Noch keine Ereignisse.", "No events yet."),
    "chart_title": ("Gebucht und erschienen, letzte 7 Tage", "Booked vs. present, last 7 days"),
    "chart_booked": ("gebucht", "booked"),
    "chart_present": ("erschienen", "present"),
    "chart_none": ("Keine Buchungen in den letzten 7 Tagen.", "No bookings in the last 7 days."),
    "actions": ("Aktionen", "Actions"),
    "act_push": ("Zutrittsliste jetzt senden", "Push access list now"),
    "act_unlock": ("Tür öffnen", "Unlock door"),
    "act_lockdown": ("Sperre beginnen", "Start lockdown"),
    "act_lockdown_end": ("Sperre beenden", "End lockdown"),
    "act_checkout_all": ("Alle abmelden", "Check everybody out"),
    "door": ("Tür", "Door"),
    "room": ("Raum", "Room"),
    "seconds": ("Sekunden", "Seconds"),
    "all_rooms": ("alle Räume", "all rooms"),
    "confirm_title": ("Bitte bestätigen", "Please confirm"),
    "confirm_do": ("Ja, ausführen", "Yes, do it"),
    "cancel": ("Abbrechen", "Cancel"),
    "confirm_push": ("Die vollständige Zutrittsliste an „{site}“ senden?", "Push the full access list to “{site}”?"),
    "confirm_unlock": ("Tür „{door}“ in „{site}“ für {seconds} s öffnen?",
                       "Unlock door “{door}” at “{site}” for {seconds} s?"),
    "confirm_lockdown": ("„{site}“ sperren? Danach öffnet keine Karte eine Tür (die Taster innen schon).",
                         "Lock “{site}” down? No badge will open a door (exit buttons still do)."),
    "confirm_lockdown_end": ("Die Sperre in „{site}“ beenden?", "End the lockdown at “{site}”?"),
    "confirm_checkout_all": ("Alle in „{room}“ ({site}) abmelden?", "Check everybody out of “{room}” ({site})?"),
    "act_enroll": ("Karte anlernen", "Enroll a card"),
    "member": ("Mitglied (ID)", "Member (id)"),
    "reader": ("Leser", "Reader"),
    "confirm_enroll": ("In „{site}“ am Leser „{reader}“ eine Karte für Mitglied „{member}“ anlernen? Der Standort "
                       "wartet {seconds} s auf die Karte; die nächste Karte an diesem Leser öffnet keine Tür.",
                       "Enroll a card for member “{member}” at reader “{reader}” of “{site}”? The site waits "
                       "{seconds} s for the card; the next card at that reader opens no door."),
    "enroll_hint": ("Die Hausmeisterei hält die neue Karte einmal an den Leser, sobald hier „wartet auf die "
                    "Karte“ steht.", "The caretaker holds the new card to the reader once, as soon as this says "
                    "“waiting for the card”."),
    "enroll.sent": ("Befehl gesendet – warte auf den Standort …", "Command sent – waiting for the site …"),
    "enroll.acknowledged": ("Der Standort wartet auf die Karte an „{reader}“ (noch {left} s): jetzt die Karte "
                            "einmal vorhalten.", "The site is waiting for the card at “{reader}” ({left} s left): "
                            "hold the card to the reader once now."),
    "enroll.read": ("Karte eingelesen – wird angelernt …", "Card read – enrolling …"),
    "enroll.enrolled": ("Karte für „{member}“ angelernt – neue Zutrittsliste wird erstellt …",
                        "Card enrolled to “{member}” – building the new access list …"),
    "enroll.enrolled_final": ("Karte für „{member}“ angelernt. „{member}“ hat hier keine Buchung und keine "
                              "Dauerberechtigung: die Karte öffnet hier noch keine Tür.",
                              "Card enrolled to “{member}”. “{member}” has no booking or standing grant here: "
                              "the card opens no door here yet."),
    "enroll.pushed": ("Karte angelernt; Zutrittsliste {version} an den Standort gesendet – warte auf Bestätigung …",
                      "Card enrolled; access list {version} sent to the site – waiting for it to apply it …"),
    "enroll.held": ("Fertig: der Standort hat die Zutrittsliste {version} mit der Karte. Die Karte öffnet jetzt, "
                    "was „{member}“ öffnen darf.", "Done: the site holds access list {version} with the card. "
                    "It now opens what “{member}” may open."),
    "enroll.refused_code": ("Der Standort hat den Befehl abgelehnt ({code}): gibt es dort den Leser „{reader}“? "
                            "Nichts angelernt.", "The site refused the command ({code}): does it have a reader "
                            "“{reader}”? Nothing enrolled."),
    "enroll.conflict": ("Diese Karte gehört schon Mitglied „{detail}“ – nichts angelernt.",
                        "This card belongs to member “{detail}” already – nothing enrolled."),
    "enroll.refused": ("Abgelehnt ({detail}) – nichts angelernt.", "Refused ({detail}) – nothing enrolled."),
    "enroll.expired": ("Zeit abgelaufen: keine Karte vorgehalten – nichts angelernt. Der Leser arbeitet wieder "
                       "normal.", "Timed out: no card was presented – nothing enrolled. The reader is back to "
                       "normal."),
    "enroll.noack": ("Der Standort hat nicht geantwortet (offline?) – nichts angelernt.",
                     "The site did not answer (offline?) – nothing enrolled."),
    "enroll.lost": ("Stand nicht abrufbar: {error}", "Cannot get the state: {error}"),
    "sent": ("Gesendet – der Standort bestätigt gleich.", "Sent – the site will confirm shortly."),
    "failed": ("Fehlgeschlagen: {error}", "Failed: {error}"),
    "live": ("live", "live"),
    "live_lost": ("Verbindung unterbrochen – verbinde neu …", "Connection lost – reconnecting …"),
    "logged_out": ("Sitzung beendet – bitte neu anmelden.", "Session ended – please log in again."),
    "not_found": ("Nicht gefunden.", "Not found."),
    "forbidden": ("Das dürfen Sie hier nicht.", "You may not do that here."),
    "bad_request": ("Diese Anfrage ist ungültig.", "This request is not valid."),
    "details": ("Einzelheiten", "Details"),
    "audit": ("Protokoll", "Audit trail"),
    "no_audit": ("Keine Einträge in diesem Zeitraum.", "Nothing recorded in this range."),
    "site": ("Standort", "Site"),
    "all_sites": ("alle Standorte", "all sites"),
    "all_doors": ("alle Türen", "all doors"),
    "from": ("von", "from"),
    "until": ("bis", "until"),
    "show": ("Anzeigen", "Show"),
    "time": ("Zeit", "Time"),
    "who": ("Wer", "Who"),
    "act": ("Handlung", "Act"),
    "outcome": ("Ergebnis", "Outcome"),
    "outcome_ok": ("ausgeführt", "done"),
    "outcome_refused": ("abgelehnt", "refused"),
    "outcome_failed": ("fehlgeschlagen", "failed"),
    "export": ("Export (CSV)", "Export (CSV)"),
    "event_type": ("Ereignisart", "Event type"),
    "download_events": ("Ereignisse als CSV", "Events as CSV"),
    "download_audit": ("Protokoll als CSV", "Audit trail as CSV"),
    "download_excel": ("für Excel", "for Excel"),
    "undelivered": ("Nicht zugestellte Alarmnachrichten", "Alert messages not delivered"),
    "channel": ("Weg", "Channel"),
    "recipient": ("Empfänger", "Recipient"),
    "attempts": ("Versuche", "Tries"),
    "last_error": ("Letzter Fehler", "Last error"),
    "ev.access.granted": ("Zutritt", "Access granted"),
    "ev.access.denied": ("Abgewiesen", "Access denied"),
    "ev.door.opened": ("Tür geöffnet", "Door opened"),
    "ev.door.closed": ("Tür geschlossen", "Door closed"),
    "ev.door.forced_open": ("Tür aufgebrochen!", "Door forced open!"),
    "ev.door.held_open": ("Tür zu lange offen", "Door held open"),
    "ev.occupancy.checkin": ("Angekommen", "Checked in"),
    "ev.occupancy.checkout": ("Gegangen", "Checked out"),
    "ev.cache.applied": ("Zutrittsliste übernommen", "Access list applied"),
    "ev.cache.rejected": ("Zutrittsliste abgelehnt", "Access list refused"),
    "ev.command.executed": ("Befehl ausgeführt", "Command executed"),
    "ev.command.rejected": ("Befehl abgelehnt", "Command refused"),
    "ev.reader.error": ("Leser gestört", "Reader error"),
    "ev.reader.online": ("Leser verbunden", "Reader online"),
    "ev.reader.offline": ("Leser antwortet nicht", "Reader offline"),
    "ev.reader.tamper": ("Leser manipuliert!", "Reader tampered!"),
    "ev.enroll.read": ("Karte eingelesen", "Card read for enrollment"),
    "ev.system.started": ("Standort gestartet", "Site started"),
    "ev.system.stopping": ("Standort fährt herunter", "Site stopping"),
    "ev.clock.trusted": ("Uhr synchron", "Clock trusted"),
    "ev.clock.untrusted": ("Uhr nicht vertrauenswürdig", "Clock not trusted"),
    "r.booking": ("Buchung", "booking"),
    "r.standing": ("Dauerberechtigung", "standing grant"),
    "r.exit_button": ("Taster", "exit button"),
    "r.command": ("Fernbefehl", "remote command"),
    "r.unknown_credential": ("unbekannte Karte", "unknown card"),
    "r.outside_window": ("außerhalb der Buchung", "outside the booking"),
    "r.wrong_door": ("falsche Tür", "wrong door"),
    "r.cache_expired": ("Liste abgelaufen", "list expired"),
    "r.clock_untrusted": ("Uhr unsicher", "clock not trusted"),
    "r.lockdown": ("Sperre", "lockdown"),
    "r.rate_limited": ("zu viele Versuche", "too many attempts"),
    "r.badge": ("Karte", "badge"),
    "r.booking_ended": ("Buchungsende", "booking ended"),
    "r.daily_reset": ("Tagesende", "end of day"),
}

STRINGS.update(ALERT_STRINGS)
STRINGS.update(MEMBER_STRINGS)

_WEEKDAYS = {"de": ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"), "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}


def pick(*candidates: str | None) -> str:
    """The first supported language among ``candidates`` (query, cookie), else German."""
    for c in candidates:
        if c in LANGS:
            return c
    return DEFAULT


def t(lang: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``lang`` with ``values`` filled in; the key itself if unknown."""
    pair = STRINGS.get(key)
    if pair is None:
        return key
    text = pair[LANGS.index(lang)] if lang in LANGS else pair[0]
    return text.format(**values) if values else text


def when(lang: str, ts: float | None) -> str:
    """An absolute local time, e.g. ``20.11. 14:05`` / ``Nov 20, 14:05``."""
    if ts is None:
        return "–"
    d = dt.datetime.fromtimestamp(ts).astimezone()
    return d.strftime("%d.%m. %H:%M") if lang == "de" else d.strftime("%b %d, %H:%M")


def ago(lang: str, ts: float | None, now: float) -> str:
    """A relative time, e.g. ``vor 5 Min.`` / ``5 min ago`` (``in …`` for the future)."""
    if ts is None:
        return "–"
    s = now - ts
    future, s = s < 0, abs(s)
    units = (("d", 86400, "Tg.", "d"), ("h", 3600, "Std.", "h"), ("m", 60, "Min.", "min"), ("s", 1, "s", "s"))
    n, de, en = 0, "s", "s"
    for _, size, de_u, en_u in units:
        if s >= size or size == 1:
            n, de, en = int(s // size), de_u, en_u
            break
    if lang == "de":
        return f"in {n} {de}" if future else f"vor {n} {de}"
    return f"in {n} {en}" if future else f"{n} {en} ago"


def weekday(lang: str, day: dt.date) -> str:
    return _WEEKDAYS.get(lang, _WEEKDAYS[DEFAULT])[day.weekday()]
