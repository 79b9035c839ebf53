"""The member pages' strings (``hub.dashboard.member_pages``), German first, English second."""

from __future__ import annotations

#: key → (German, English)
STRINGS: dict[str, tuple[str, str]] = {
    "members": ("Mitglieder", "Members"),
    "member_id": ("ID", "Id"),
    "member_name": ("Name", "Name"),
    "member_email": ("E-Mail", "E-mail"),
    "member_credentials": ("Karten", "Cards"),
    "member_pin": ("PIN", "PIN"),
    "member_search": ("ID oder Name", "Id or name"),
    "search": ("Suchen", "Search"),
    "no_members": ("Keine Mitglieder gefunden.", "No members found."),
    "members_shown": ("{shown} von {total} Mitgliedern angezeigt – bitte die Suche eingrenzen.",
                      "{shown} of {total} members shown – please narrow the search."),
    "member_export": ("Auskunft (JSON)", "Access request (JSON)"),
    "member_erase": ("Löschen", "Erase"),
    "member_erased": ("Mitglied „{member}“ wurde gelöscht; die Zutrittslisten ohne es gehen an die Standorte.",
                      "Member “{member}” was erased; the access lists without them go out to the sites."),
    "confirm_member_erase": ("Mitglied „{name}“ ({id}) endgültig löschen? Name, E-Mail, Karten, PINs, "
                             "Dauerberechtigungen und die Kopien seiner Buchungen werden gelöscht, seine "
                             "Einträge verlassen die Zutrittslisten aller Standorte. Das lässt sich nicht "
                             "rückgängig machen.",
                             "Erase member “{name}” ({id}) for good? Name, e-mail, cards, PINs, standing grants "
                             "and the copies of their bookings are deleted; their entries leave every site's "
                             "access list. This cannot be undone."),
    "member_pin_set": ("gesetzt", "set"),
}
