"""One day in two village halls, played against the real hub and the real site agents.

The day runs on a compressed clock: a "demo hour" is ``hour_seconds`` real seconds, and
07:00 is ``t0``. Today's bookings go onto the booking platform at 07:00 with real
timestamps on that clock; the hub's own sync brings them to the sites. A scene never runs
before its time (its booking has begun) but may run late when the machine is slow: the
bookings run past the scenes that use them, so lateness changes nothing but the pace.

Every step waits for what the site recorded (see demo_site), so what is printed is what
happened, and the checks at the end do not depend on timing luck.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .booking_fake import BookingPlatform, push_webhook
from .county import County
from .demo_county import ROOM_NAMES, TZ, Person
from .demo_site import Event, SiteView

ACCESS = ("access.granted", "access.denied")
STEP_TIMEOUT = 30.0
#: How long a scene waits for its booking to reach the site (the hub syncs every few seconds).
BOOKING_TIMEOUT = 90.0

# (person, site, room, start, end) in demo hours; everyone leaves before the booking ends.
TODAY = [
    ("anna", "minheim", "coworking", 8.0, 19.5),
    ("lena", "wehlen", "coworking", 8.0, 19.5),
    ("jonas", "minheim", "coworking", 8.5, 19.5),
    ("paul", "minheim", "besprechung", 9.0, 19.5),
    ("sophie", "minheim", "coworking", 10.0, 17.0),
    ("mia", "wehlen", "coworking", 10.0, 19.5),
    ("gast", "wehlen", "coworking", 13.0, 19.5),
]
LATE_BOOKING = ("felix", "minheim", "besprechung", 14.0, 19.5)
#: The next day's 07:00 comes this many hours after this day's, when every booking has ended.
DAY_LENGTH = 13.0
#: The readers of the layouts in demo_county: reader → (door, direction).
READERS = {
    "minheim": {"eingang": ("eingang", "in"), "coworking-in": ("coworking", "in"),
                "coworking-out": ("coworking", "out"), "besprechung": ("besprechung", "in")},
    "wehlen": {"eingang": ("eingang", "in"), "coworking": ("coworking", "in")},
}
ROOM_READERS = {("minheim", "coworking"): ("coworking-in", "coworking-out"),
                ("minheim", "besprechung"): ("besprechung", "besprechung"),
                ("wehlen", "coworking"): ("coworking", "coworking")}
TOGGLE = {("minheim", "besprechung"), ("wehlen", "coworking")}
CAPACITY = {("minheim", "coworking"): 8, ("minheim", "besprechung"): 6, ("wehlen", "coworking"): 6}


def hhmm(h: float) -> str:
    minutes = round(h * 60)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


@dataclass
class Tally:
    """What the demo saw happen (the hub's counts are taken separately, at the end)."""

    scenes: int = 0
    max_lag: float = 0.0
    cancelled_refused: bool | None = None
    cancelled_reason: str | None = None
    checkins: int = 0
    booking_waits: list[float] = field(default_factory=list)


@dataclass
class World:
    """Everything a day acts on."""

    platform: BookingPlatform
    county: County
    people: dict[str, Person]
    sites: dict[str, SiteView]
    say: Callable[[str], None]
    tally: Tally = field(default_factory=Tally)
    #: (site, room) → who is inside, following the sites' check-in and check-out events.
    present: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    presence_seen: dict[str, int] = field(default_factory=dict)


class Day:
    def __init__(self, world: World, index: int, t0: float, hour_seconds: float) -> None:
        self.w = world
        self.index = index
        self.t0 = t0
        self.hour = hour_seconds
        self.bookings: dict[str, str] = {}  # person → today's booking id
        self.now_h = 7.0

    # --- clock and narration ---------------------------------------------------------------

    def real(self, h: float) -> float:
        return self.t0 + (h - 7.0) * self.hour

    def say(self, text: str, *, first: bool = False) -> None:
        self.w.say(f"{hhmm(self.now_h)}  {text}" if first else f"       {text}")

    def sleep_until(self, t: float) -> None:
        while (left := t - time.time()) > 0:
            for sv in self.w.sites.values():
                if sv.child is not None:
                    sv.child.check()
            time.sleep(min(left, 0.2))

    def site_name(self, site: str) -> str:
        return self.w.sites[site].name

    # --- the plan ------------------------------------------------------------------------------

    def scenes(self) -> list[tuple[float, Callable[[], None]]]:
        return [
            (7.0, self.morning_bookings),
            (7.5, lambda: self.caretaker_opens("klaus", "minheim")),
            (8.0, lambda: self.arrive("anna", "minheim", "coworking")),
            (8.25, lambda: self.arrive("lena", "wehlen", "coworking")),
            (8.5, lambda: self.arrive("jonas", "minheim", "coworking")),
            (9.0, lambda: self.arrive("paul", "minheim", "besprechung")),
            (9.25, lambda: self.stranger("fremd", "minheim")),
            (9.5, lambda: self.book_late(*LATE_BOOKING)),
            (10.0, lambda: self.arrive("sophie", "minheim", "coworking")),
            (10.25, lambda: self.arrive("mia", "wehlen", "coworking", prop_door=True)),
            (11.0, lambda: self.wrong_door("jonas", "minheim", "besprechung")),
            (11.5, lambda: self.leave("sophie", "minheim", "coworking")),
            (12.0, lambda: self.cancel("sophie")),
            (12.5, lambda: self.leave("anna", "minheim", "coworking")),
            (12.75, lambda: self.leave("paul", "minheim", "besprechung")),
            (13.0, lambda: self.comes_back_cancelled("sophie", "minheim")),
            (13.25, lambda: self.arrive("gast", "wehlen", "coworking")),
            (14.0, lambda: self.arrive("felix", "minheim", "besprechung")),
            (15.0, lambda: self.leave("lena", "wehlen", "coworking")),
            (15.5, lambda: self.leave("felix", "minheim", "besprechung")),
            (16.0, lambda: self.leave("gast", "wehlen", "coworking")),
            (16.5, lambda: self.leave("jonas", "minheim", "coworking")),
            (16.75, lambda: self.leave("mia", "wehlen", "coworking")),
            (17.0, lambda: self.caretaker_closes("klaus", "minheim")),
        ]

    def play(self) -> None:
        for h, scene in self.scenes():
            self.sleep_until(self.real(h))
            self.w.tally.max_lag = max(self.w.tally.max_lag, time.time() - self.real(h))
            self.now_h = h
            scene()
            self.w.tally.scenes += 1

    # --- bookings on the platform ------------------------------------------------------------

    def _book(self, person: str, site: str, room: str, start: float, end: float) -> str:
        p = self.w.people[person]
        bid = f"bk-day{self.index}-{person}"
        pin = p.credential.partition(":")[2] if p.credential.startswith("pin:") else None
        assert p.member_id is not None
        self.w.platform.add(bid, self.w.county.resource(site, room), p.member_id,
                            _at(self.real(start)), _at(self.real(end)), pin=pin)
        self.bookings[person] = bid
        return bid

    def morning_bookings(self) -> None:
        for person, site, room, start, end in TODAY:
            self._book(person, site, room, start, end)
        self.say(f"The booking platform has {len(TODAY)} bookings for today; the hub's sync brings them "
                 "to the halls.", first=True)
        for person, site, room, start, end in TODAY:
            self.say(f"  {self.w.people[person].name:<16} {ROOM_NAMES[(site, room)]:<17} "
                     f"{self.site_name(site):<30} {hhmm(start)}-{hhmm(end)}")

    def book_late(self, person: str, site: str, room: str, start: float, end: float) -> None:
        self._book(person, site, room, start, end)
        self.say(f"{self.w.people[person].name} books the {ROOM_NAMES[(site, room)]} of {self.site_name(site)} "
                 f"for {hhmm(start)}-{hhmm(end)} on the platform (no webhook: the next sync brings it).", first=True)

    def cancel(self, person: str) -> None:
        p, bid = self.w.people[person], self.bookings[person]
        booking = self.w.platform.cancel(bid)
        t0 = time.monotonic()
        status = push_webhook(self.w.county.http_url, booking, self.w.county.webhook_secret)
        self.say(f"{p.name} cancels the rest of her booking on the platform; it tells the hub by webhook "
                 f"(HTTP {status}).", first=True)
        if status != 200:
            raise RuntimeError(f"the hub refused the cancellation webhook: HTTP {status}")
        sv = self.w.sites[self._site_of(person)]
        sv.wait(lambda: bid not in sv.refs_for(p.credential), STEP_TIMEOUT, f"the cancellation of {bid}")
        self.say(f"{time.monotonic() - t0:.2f} s after the webhook {sv.name} no longer holds the booking "
                 f"(cache version {sv.cache_version()}).")

    def _site_of(self, person: str) -> str:
        for p, site, *_ in [*TODAY, LATE_BOOKING]:
            if p == person:
                return site
        raise KeyError(person)

    def _await_booking(self, person: str, site: str) -> None:
        p, sv, bid = self.w.people[person], self.w.sites[site], self.bookings[person]
        waited = sv.wait(lambda: bid in sv.refs_for(p.credential), BOOKING_TIMEOUT, f"booking {bid} at the site")
        self.w.tally.booking_waits.append(waited)
        if waited > 0.5:
            self.say(f"(waited {waited:.1f} s for the hub's sync to bring {p.short}'s booking to the hall)")

    # --- people at doors ---------------------------------------------------------------------

    def _badge(self, site: str, reader: str, person: Person) -> Event:
        sv = self.w.sites[site]
        door = READERS[site][reader][0]
        cursor = sv.last_seq()
        sv.badge(reader, person.credential)
        return sv.wait_event(cursor, lambda e: e["type"] in ACCESS and e.get("door") == door, STEP_TIMEOUT,
                             f"decision at {door}")

    def _walk_through(self, site: str, door: str, *, hold: bool = False) -> list[Event]:
        """Open the door and let it fall shut (unless ``hold``); the door events seen."""
        sv = self.w.sites[site]
        cursor = sv.last_seq()
        sv.act(f"open {door}")
        if hold:
            return [sv.wait_event(cursor, lambda e: e["type"] == "door.opened" and e.get("door") == door,
                                  STEP_TIMEOUT, f"door.opened at {door}")]
        sv.act(f"close {door}")
        closed = sv.wait_event(cursor, lambda e: e["type"] == "door.closed" and e.get("door") == door,
                               STEP_TIMEOUT, f"door.closed at {door}")
        events = [e for e in sv.events_after(cursor) if e["seq"] <= closed["seq"] and e.get("door") == door]
        for e in events:
            if e["type"] == "door.forced_open":
                self.say(f"(alarm: {door} counted as forced open; the machine is very slow)")
        return events

    def _occupancy(self, site: str, ev: Event) -> str:
        """A few words on the check-in or check-out that the grant ``ev`` caused, if any.

        The agent emits it in the same step as the grant, so it is the very next event;
        call this once a later event exists (the door has closed behind the person)."""
        self._sync_presence(site)
        after = self.w.sites[site].events_after(ev["seq"], n=1000)
        occ = next((e for e in after if e["seq"] == ev["seq"] + 1 and e["type"].startswith("occupancy.")), None)
        if occ is None:
            return ""
        room = occ["room"]
        inside = len(self.w.present.get((site, room), ()))
        verb = "checked out" if occ["type"] == "occupancy.checkout" else "checked in"
        return f", {verb} ({inside}/{CAPACITY[(site, room)]} in the {ROOM_NAMES[(site, room)]})"

    def _sync_presence(self, site: str) -> None:
        """Follow the site's check-ins and check-outs (also those at a booking's end)."""
        sv = self.w.sites[site]
        seen = self.w.presence_seen.get(site, 0)
        for e in sv.events_after(seen, n=1000):
            seen = max(seen, e["seq"])
            if e["type"] in ("occupancy.checkin", "occupancy.checkout"):
                inside = self.w.present.setdefault((site, e["room"]), set())
                (inside.add if e["type"] == "occupancy.checkin" else inside.discard)(e["who"])
                if e["type"] == "occupancy.checkin" and e.get("reason") == "badge":
                    self.w.tally.checkins += 1
        self.w.presence_seen[site] = seen

    @staticmethod
    def _outcome(ev: Event) -> str:
        word = "granted" if ev["type"] == "access.granted" else "REFUSED"
        return f"{word} ({ev.get('reason')})"

    def arrive(self, person: str, site: str, room: str, *, prop_door: bool = False) -> None:
        p = self.w.people[person]
        self._await_booking(person, site)
        ev = self._badge(site, "eingang", p)
        self.say(f"{p.name} {p.presents} at {self.site_name(site)}/eingang: {self._outcome(ev)}", first=True)
        if ev["type"] != "access.granted":
            return
        if prop_door:
            self._held_open(site, "eingang", p)
        else:
            self._walk_through(site, "eingang")
        reader = ROOM_READERS[(site, room)][0]
        ev = self._badge(site, reader, p)
        extra = ""
        if ev["type"] == "access.granted":
            self._walk_through(site, READERS[site][reader][0])
            extra = self._occupancy(site, ev)
        self.say(f"{p.short} {p.presents} at the {ROOM_NAMES[(site, room)]} door: {self._outcome(ev)}{extra}")

    def _held_open(self, site: str, door: str, p: Person) -> None:
        sv = self.w.sites[site]
        cursor = sv.last_seq()
        self._walk_through(site, door, hold=True)
        self.say(f"{p.short} props the door open to carry in a crate of Moselwein for the evening...")
        alarm = sv.wait_event(cursor, lambda e: e["type"] == "door.held_open" and e.get("door") == door,
                              STEP_TIMEOUT + 120, f"door.held_open at {door}")
        self.say(f"ALARM door.held_open at {self.site_name(site)}/{door} after {alarm.get('seconds')} s "
                 "(on the caretakers' dashboard)")
        cursor = sv.last_seq()
        sv.act(f"close {door}")
        sv.wait_event(cursor, lambda e: e["type"] == "door.closed" and e.get("door") == door, STEP_TIMEOUT,
                      f"door.closed at {door}")
        self.say(f"{p.short} shuts the door: the alarm clears.")

    def leave(self, person: str, site: str, room: str) -> None:
        p = self.w.people[person]
        reader = ROOM_READERS[(site, room)][1]
        how = "the out-reader" if reader.endswith("-out") else "the same reader again (toggle room)"
        ev = self._badge(site, reader, p)
        extra = ""
        if ev["type"] == "access.granted":
            self._walk_through(site, READERS[site][reader][0])
            extra = self._occupancy(site, ev)
        self.say(f"{p.name} leaves the {ROOM_NAMES[(site, room)]} of {self.site_name(site)} by {how}: "
                 f"{self._outcome(ev)}{extra}", first=True)
        self._exit(site, "eingang", p)

    def _exit(self, site: str, door: str, p: Person) -> None:
        sv = self.w.sites[site]
        cursor = sv.last_seq()
        sv.act(f"exit {door}")
        ev = sv.wait_event(cursor, lambda e: e["type"] == "access.granted" and e.get("door") == door
                           and e.get("reason") == "exit_button", STEP_TIMEOUT, f"exit button at {door}")
        self._walk_through(site, door)
        self.say(f"{p.short} presses the exit button at the entrance: {self._outcome(ev)}, and is gone.")

    def stranger(self, person: str, site: str) -> None:
        p = self.w.people[person]
        ev = self._badge(site, "eingang", p)
        self.say(f"{p.name.capitalize()} tries an unknown card at {self.site_name(site)}/eingang: "
                 f"{self._outcome(ev)}", first=True)

    def wrong_door(self, person: str, site: str, room: str) -> None:
        p = self.w.people[person]
        ev = self._badge(site, ROOM_READERS[(site, room)][0], p)
        self.say(f"{p.name} tries the {ROOM_NAMES[(site, room)]} (booked: Coworking): {self._outcome(ev)}",
                 first=True)

    def comes_back_cancelled(self, person: str, site: str) -> None:
        p = self.w.people[person]
        ev = self._badge(site, "eingang", p)
        refused = ev["type"] == "access.denied"
        if self.w.tally.cancelled_refused is None or not refused:
            self.w.tally.cancelled_refused = refused
            self.w.tally.cancelled_reason = str(ev.get("reason"))
        why = " (her other bookings are on other days)" if ev.get("reason") == "outside_window" else ""
        self.say(f"{p.name} comes back after lunch (her booking until 17:00 is cancelled): "
                 f"{self._outcome(ev)}{why}", first=True)

    def caretaker_opens(self, person: str, site: str) -> None:
        p = self.w.people[person]
        ev = self._badge(site, "eingang", p)
        self.say(f"{p.name} (Hausmeister) opens up {self.site_name(site)}: {self._outcome(ev)}", first=True)
        if ev["type"] == "access.granted":
            self._walk_through(site, "eingang")

    def caretaker_closes(self, person: str, site: str) -> None:
        p = self.w.people[person]
        self._sync_presence(site)
        inside = sum(len(v) for (s, _), v in self.w.present.items() if s == site)
        self.say(f"{p.name} makes his round of {self.site_name(site)}: {inside} people still inside.", first=True)
        self._exit(site, "eingang", p)


def _at(t: float) -> dt.datetime:
    """Unix time ``t`` as a local time in the halls' time zone."""
    return dt.datetime.fromtimestamp(t, TZ)
