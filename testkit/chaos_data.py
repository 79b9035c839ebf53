"""The people of the chaos run's county: members and their cards, bookings on the platform
fake, caretakers with standing grants, and what the badge load presents at each site.

Everything comes from one seeded ``random.Random``: the same seed gives the same county.
Card ids have letters in them and PINs 12 digits, so that the privacy scan
(testkit.credscan) cannot mistake a timestamp or a hash for one.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from hub.store import Store

from .booking_fake import BookingPlatform

HEX = "0123456789ABCDEF"


def _hex(rng: random.Random, n: int) -> str:
    while True:
        value = "".join(rng.choice(HEX) for _ in range(n))
        if sum(c.isalpha() for c in value) >= 2:
            return value


def card(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"em4100:{_hex(rng, 10)}"
    return f"iso14443a:04{_hex(rng, 12)}"


def pin_digits(rng: random.Random) -> str:
    return str(rng.randrange(10**11, 10**12))


@dataclass
class Palette:
    """What the badge load presents at one site, by what the hub would make of it."""

    current: list[str] = field(default_factory=list)   # members with a booking now
    pins: list[str] = field(default_factory=list)      # PINs of bookings now
    future: list[str] = field(default_factory=list)    # members whose booking is later
    past: list[str] = field(default_factory=list)      # members whose booking ended
    caretaker: list[str] = field(default_factory=list)  # standing grant
    foreign: list[str] = field(default_factory=list)   # enrolled, booked elsewhere only
    strangers: list[str] = field(default_factory=list)  # never enrolled

    def pick(self, rng: random.Random) -> tuple[str, str]:
        """(category, credential string)."""
        choices = [("current", self.current, 35), ("pin", self.pins, 10), ("future", self.future, 12),
                   ("past", self.past, 8), ("caretaker", self.caretaker, 10), ("foreign", self.foreign, 10),
                   ("stranger", self.strangers, 15)]
        live = [(n, lst, w) for n, lst, w in choices if lst]
        name, lst, _ = rng.choices(live, weights=[w for *_, w in live])[0]
        return name, rng.choice(lst)


@dataclass
class Population:
    members: dict[str, list[str]] = field(default_factory=dict)  # member id → credential strings
    bookings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # site → bookings
    caretakers: dict[str, str] = field(default_factory=dict)  # site → member id
    palettes: dict[str, Palette] = field(default_factory=dict)
    strangers: list[str] = field(default_factory=list)
    big: tuple[str, ...] = ()
    _shifts: int = 0

    def all_credentials(self) -> set[str]:
        """Every credential string the run may present (for the privacy scan)."""
        out = {c for creds in self.members.values() for c in creds} | set(self.strangers)
        out |= {f"pin:{b['pin']}" for lst in self.bookings.values() for b in lst if b.get("pin")}
        return out

    def total_bookings(self) -> int:
        return sum(len(v) for v in self.bookings.values())


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def populate(rng: random.Random, sites: list[str], big: list[str], *, resource: dict[str, str],
             small_bookings: int = 40, big_bookings: int = 2000, pool: int = 200) -> Population:
    """Members, cards, bookings and caretakers for ``sites`` (``big`` ones get
    ``big_bookings`` bookings of their own members, 2 cards each); ``resource`` maps a site
    to its bookable resource id. Booking times are relative to now and last hours beyond
    any run."""
    pop = Population(big=tuple(big))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    used: set[str] = set()

    def fresh_card() -> str:
        while True:
            c = card(rng)
            if c not in used:
                used.add(c)
                return c

    for i in range(pool):
        pop.members[f"m-{i:04d}"] = [fresh_card() for _ in range(rng.randint(1, 2))]
    shared = sorted(pop.members)
    pop.strangers = [fresh_card() for _ in range(300)]
    n = 0

    def booking(site: str, member: str, start: dt.datetime, end: dt.datetime, with_pin: bool) -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"id": f"bk-{site}-{n:06d}", "resource_id": resource[site], "member_id": member,
                "start": iso(start), "end": iso(end), "status": "confirmed",
                "pin": pin_digits(rng) if with_pin else None}

    for site in sites:
        pal = Palette(strangers=pop.strangers)
        lst: list[dict[str, Any]] = []
        caretaker = f"care-{site}"
        pop.members[caretaker] = [fresh_card()]
        pop.caretakers[site] = caretaker
        pal.caretaker = list(pop.members[caretaker])
        if site in big:
            own = []
            for j in range(max(1, big_bookings // 2)):
                mid = f"b-{site}-{j:05d}"
                pop.members[mid] = [fresh_card(), fresh_card()]
                own.append(mid)
            for j in range(big_bookings):
                mid = own[j % len(own)]
                start = now - dt.timedelta(minutes=30) + dt.timedelta(hours=6 * (j // len(own)))
                lst.append(booking(site, mid, start, start + dt.timedelta(hours=5), rng.random() < 0.1))
            pal.current = [c for mid in own[:200] for c in pop.members[mid]]
        else:
            members = rng.sample(shared, min(len(shared), small_bookings))
            for j, mid in enumerate(members):
                kind = j % 8
                if kind < 5:  # now, for hours beyond any run
                    start, end = now - dt.timedelta(minutes=30), now + dt.timedelta(hours=5)
                    target = pal.current
                elif kind < 7:  # the day after tomorrow
                    start = now + dt.timedelta(days=2)
                    end = start + dt.timedelta(hours=3)
                    target = pal.future
                else:  # ended two hours ago (still in the cache, outside its window)
                    start, end = now - dt.timedelta(hours=5), now - dt.timedelta(hours=2)
                    target = pal.past
                b = booking(site, mid, start, end, rng.random() < 0.3)
                lst.append(b)
                target.extend(pop.members[mid])
                if b["pin"] and kind < 5:
                    pal.pins.append(f"pin:{b['pin']}")
        pop.bookings[site] = lst
        pop.palettes[site] = pal
    bigs = [c for s in big for mid in pop.bookings[s][:50] for c in pop.members[mid["member_id"]]]
    for site in sites:
        if site not in big:
            pop.palettes[site].foreign = bigs or pop.strangers
    return pop


def enroll(pop: Population, store: Store) -> None:
    """Members, their cards and the caretakers' standing grants into the hub store (sites
    must be synced into it first)."""
    store.add_members((mid, f"Member {mid}", None) for mid in pop.members)
    store.import_credentials((mid, c) for mid, creds in pop.members.items() for c in creds)
    for site, mid in pop.caretakers.items():
        store.add_grant(mid, site, None, label="caretaker")


def publish(pop: Population, platform: BookingPlatform) -> None:
    for lst in pop.bookings.values():
        for b in lst:
            platform.put(b)


def big_change(pop: Population, platform: BookingPlatform, site: str, rng: random.Random,
               share: float = 0.4) -> int:
    """Move the end of ``share`` of ``site``'s bookings by a few minutes: thousands of
    changed cache entries in the next sync. Return how many bookings changed."""
    pop._shifts += 1
    lst = pop.bookings[site]
    chosen = rng.sample(range(len(lst)), max(1, int(len(lst) * share)))
    for i in chosen:
        b = dict(lst[i])
        end = dt.datetime.fromisoformat(b["end"].replace("Z", "+00:00"))
        b["end"] = iso(end + dt.timedelta(minutes=1 + pop._shifts % 7))
        lst[i] = b
        platform.put(b)
    return len(chosen)


def small_change(pop: Population, platform: BookingPlatform, site: str, rng: random.Random) -> None:
    """Add one booking now at ``site`` for a member of its palette: a small delta."""
    pal = pop.palettes[site]
    members = [mid for mid, creds in pop.members.items() if creds and creds[0] in pal.future]
    if not members:
        return
    mid = rng.choice(members)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pop._shifts += 1
    b = {"id": f"bk-{site}-x{pop._shifts:05d}", "resource_id": pop.bookings[site][0]["resource_id"],
         "member_id": mid, "start": iso(now - dt.timedelta(minutes=10)), "end": iso(now + dt.timedelta(hours=4)),
         "status": "confirmed", "pin": None}
    pop.bookings[site].append(b)
    platform.put(b)
