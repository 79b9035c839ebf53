"""The dashboard's strings about alerts (``hub.dashboard.i18n`` merges them), German first;
the kinds' names come from the messages' (hub/alerts/texts.py), as ``alert.<kind>``."""

from __future__ import annotations

from ..alerts.texts import KIND_NAMES

STRINGS: dict[str, tuple[str, str]] = {
    "alerts": ("Alarme", "Alerts"),
    "alerts_hub": ("Hub", "Hub"),
    "alerts_open_n": ("{n} offene Alarme", "{n} open alerts"),
    "no_alerts": ("Keine offenen oder neuen Alarme.", "No open or recent alerts."),
    "alert_open": ("offen", "open"),
    "alert_resolved": ("behoben", "resolved"),
    "alert_opened": ("seit", "since"),
    "alert_resolved_at": ("behoben", "resolved"),
    "alert_acked_by": ("Bestätigt von {who} ({when})", "Acknowledged by {who} ({when})"),
    "alert_escalated": ("An die Admins eskaliert ({when})", "Escalated to the admins ({when})"),
    "alert_ack": ("Bestätigen", "Acknowledge"),
    "alert_kind": ("Art", "Kind"),
    "alert_state": ("Zustand", "State"),
    "alert_state_all": ("offen und behoben", "open and resolved"),
    "alert_state_open": ("nur offene", "open only"),
    "all_kinds": ("alle Arten", "every kind"),
    "all_sites": ("alle Standorte", "every site"),
    "site": ("Standort", "Site"),
    "filter": ("Anzeigen", "Show"),
    "alert_settings": ("Benachrichtigungen", "Notifications"),
    "alert_kinds": ("Worüber ich benachrichtigt werde", "What I hear about"),
    "alert_channels": ("Wie", "How"),
    "channel_email": ("E-Mail", "E-mail"),
    "channel_push": ("Push-Nachricht an die Browser/Handys unten", "Push notification to the browsers/phones below"),
    "push_title": ("Push-Nachrichten", "Push notifications"),
    "push_browsers": ("Angemeldete Browser: {n}", "Browsers signed up: {n}"),
    "push_enable": ("Benachrichtigungen aktivieren", "Enable notifications"),
    "push_enabled": ("Dieser Browser bekommt jetzt Push-Nachrichten.", "This browser now gets push notifications."),
    "push_denied": ("Der Browser hat Benachrichtigungen nicht erlaubt.", "The browser did not allow notifications."),
    "push_unsupported": ("Dieser Browser kann keine Push-Nachrichten empfangen (auf dem iPhone: erst zum "
                         "Home-Bildschirm hinzufügen).", "This browser cannot receive push notifications (on an "
                         "iPhone: add it to the home screen first)."),
    "push_unconfigured": ("Push-Nachrichten sind auf diesem Hub nicht eingerichtet.",
                          "Push notifications are not set up on this hub."),
    "push_failed": ("Die Anmeldung ist fehlgeschlagen; bitte später erneut versuchen.",
                    "Signing up failed; please try again later."),
    "alert_email_field": ("E-Mail-Adresse (leer: keine Nachrichten)", "E-mail address (empty: no messages)"),
    "alert_lang": ("Sprache der Nachrichten", "Language of the messages"),
    "alert_quiet": ("Ruhezeit", "Quiet hours"),
    "alert_quiet_hint": ("Z. B. 22:00-07:00 (Ortszeit). Nicht dringende Nachrichten kommen erst danach; dringende "
                         "(aufgebrochene Tür, Sabotage, Standort offline …) immer sofort. Leer: keine Ruhezeit.",
                         "E.g. 22:00-07:00 (local time). Non-urgent messages wait until it ends; urgent ones "
                         "(door forced, tampering, site offline …) always go at once. Empty: no quiet hours."),
    "alert_email": ("Nachrichten gehen an {email}.", "Messages go to {email}."),
    "alert_no_email": ("Für dieses Konto ist keine E-Mail-Adresse hinterlegt: es gehen keine Nachrichten hinaus "
                       "(hier eintragen, oder torwart-hub users alerts NAME --email ADRESSE).",
                       "This account has no e-mail address, so no messages go out (enter one here, or "
                       "torwart-hub users alerts NAME --email ADDRESS)."),
    "save": ("Speichern", "Save"),
    "saved": ("Gespeichert.", "Saved."),
    **{f"alert.{kind}": names for kind, names in KIND_NAMES.items()},
}
