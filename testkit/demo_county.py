"""The demo's county on disk: two village halls on the Mosel, their members and cards,
the hub's config and each site's config (keys, cards and passwords generated per run),
and a week of bookings on the booking platform fake.

- Bürgerhaus Minheim: rooms "coworking" (capacity 8; readers "coworking-in" and
  "coworking-out" at its door) and "besprechung" (6; one reader, a toggle room: a second
  badge checks out); doors "eingang" (reader outside, exit button inside), "coworking",
  "besprechung"; every door has a contact.
- Dorfgemeinschaftshaus Wehlen: room "coworking" (6, toggle); doors "eingang" and
  "coworking".
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import secrets
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import tomli_w

from .booking_fake import BookingPlatform
from .broker import Mosquitto
from .county import County, make_county

TZ = ZoneInfo("Europe/Berlin")

SITE_NAMES = {"minheim": "Bürgerhaus Minheim", "wehlen": "Dorfgemeinschaftshaus Wehlen"}
ROOM_NAMES = {("minheim", "coworking"): "Coworking", ("minheim", "besprechung"): "Besprechungsraum",
              ("wehlen", "coworking"): "Coworking"}


@dataclass(frozen=True)
class Person:
    """Someone in the demo. ``member_id`` is the booking platform's id (None: a stranger);
    ``credential`` what they present (a card, or a booking's PIN)."""

    key: str
    name: str
    member_id: str | None
    credential: str
    email: str | None = None
    enrolled: bool = True

    @property
    def short(self) -> str:
        """How the narration names them a second time."""
        return self.name.split()[0]

    @property
    def presents(self) -> str:
        return "types the booking's PIN" if self.credential.startswith("pin:") else "badges"


def _card() -> str:
    return "em4100:" + secrets.token_hex(5).upper()


def make_people() -> dict[str, Person]:
    """The cast, with fresh card numbers (and a fresh PIN for the guest)."""
    people = [
        Person("klaus", "Klaus Wagner", "u-2001", _card(), "hausmeister@minheim.example"),
        Person("anna", "Anna Becker", "u-1001", _card(), "anna.becker@example.org"),
        Person("jonas", "Jonas Schmitt", "u-1002", _card(), "jonas.schmitt@example.org"),
        Person("paul", "Paul Hoffmann", "u-1003", _card(), "paul.hoffmann@example.org"),
        Person("sophie", "Sophie Koch", "u-1004", _card(), "sophie.koch@example.org"),
        Person("felix", "Felix Richter", "u-1005", _card(), "felix.richter@example.org"),
        Person("lena", "Lena Weber", "u-1006", _card(), "lena.weber@example.org"),
        Person("mia", "Mia Schäfer", "u-1007", _card(), "mia.schaefer@example.org"),
        # A guest without a card: the platform gave their booking a PIN.
        Person("gast", "Ruth Braun", "u-3001", "pin:" + f"{secrets.randbelow(10**6):06d}", enrolled=False),
        Person("fremd", "a stranger", None, _card(), enrolled=False),
    ]
    return {p.key: p for p in people}


#: Members who book on the platform but hold no card here (they fill the week's chart).
OTHER_MEMBERS = ["u-1101", "u-1102", "u-1103", "u-1104", "u-1105"]


def layouts(*, unlock_seconds: float, held_open_seconds: float, long_held_open: float) -> dict[str, dict[str, Any]]:
    """The two sites' rooms, doors (pins of a real Pi header) and simulated readers."""
    minheim = {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8},
                  {"id": "besprechung", "name": "Besprechungsraum", "capacity": 6, "toggle": True}],
        "doors": [
            {"id": "eingang", "lock_pin": 17, "contact_pin": 27, "exit_pin": 22,
             "unlock_seconds": unlock_seconds, "held_open_seconds": long_held_open},
            {"id": "coworking", "room": "coworking", "lock_pin": 5, "contact_pin": 6,
             "unlock_seconds": unlock_seconds, "held_open_seconds": long_held_open},
            {"id": "besprechung", "room": "besprechung", "lock_pin": 13, "contact_pin": 19,
             "unlock_seconds": unlock_seconds, "held_open_seconds": long_held_open},
        ],
        "readers": [
            {"id": "eingang", "type": "sim", "door": "eingang"},
            {"id": "coworking-in", "type": "sim", "door": "coworking"},
            {"id": "coworking-out", "type": "sim", "door": "coworking", "direction": "out"},
            {"id": "besprechung", "type": "sim", "door": "besprechung"},
        ],
    }
    wehlen = {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 6, "toggle": True}],
        "doors": [
            {"id": "eingang", "lock_pin": 17, "contact_pin": 27, "exit_pin": 22,
             "unlock_seconds": unlock_seconds, "held_open_seconds": held_open_seconds},
            {"id": "coworking", "room": "coworking", "lock_pin": 5, "contact_pin": 6,
             "unlock_seconds": unlock_seconds, "held_open_seconds": long_held_open},
        ],
        "readers": [
            {"id": "eingang", "type": "sim", "door": "eingang"},
            {"id": "coworking", "type": "sim", "door": "coworking"},
        ],
    }
    return {"minheim": minheim, "wehlen": wehlen}


def mqtt_passwords() -> dict[str, str]:
    """Broker logins for the hub and each site (the broker's ACL keeps each site to its own topics)."""
    return {user: secrets.token_urlsafe(16) for user in ("hub", *SITE_NAMES)}


def write_county(dir: Path, broker: Mosquitto, platform: BookingPlatform, *, sync_interval: int,
                 unlock_seconds: float, held_open_seconds: float, long_held_open: float,
                 mqtt_users: dict[str, str] | None = None) -> County:
    """The hub's config and both sites' configs, with the halls' real names, no booking
    grace (the demo's day is compressed), and a brisk status interval."""
    county = make_county(
        dir, broker, platform, tuple(SITE_NAMES), mqtt_users=mqtt_users,
        layouts=layouts(unlock_seconds=unlock_seconds, held_open_seconds=held_open_seconds,
                        long_held_open=long_held_open),
        booking={"sync_interval_seconds": sync_interval, "grace_before_minutes": 0, "grace_after_minutes": 0},
        site_policy={"status_interval_seconds": 5},
    )
    doc = tomllib.loads(county.hub_config_path.read_text())
    for s in doc["sites"]:
        s["name"] = SITE_NAMES[s["id"]]
        for r in s["rooms"]:
            r["name"] = ROOM_NAMES[(s["id"], r["id"])]
    county.hub_config_path.write_text(tomli_w.dumps(doc))
    for site_id, files in county.sites.items():
        sdoc = tomllib.loads(files.config_path.read_text())
        sdoc["site"]["name"] = SITE_NAMES[site_id]
        files.config_path.write_text(tomli_w.dumps(sdoc))
    return county


def write_members_csv(path: Path, people: dict[str, Person]) -> Path:
    """``member_id,credential,name,email`` for ``torwart-hub cards import``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["member_id", "credential", "name", "email"])
        for p in people.values():
            if p.enrolled and p.member_id is not None:
                w.writerow([p.member_id, p.credential, p.name, p.email or ""])
    path.chmod(0o600)
    return path


def add_week(platform: BookingPlatform, county: County, people: dict[str, Person], today: dt.date,
             seed: int = 7) -> int:
    """Bookings on the three days before and after ``today`` (local time, 08:00-19:00),
    a few of them cancelled: the hub's week view has something to show. Today's bookings
    come from the day's plan. Returns how many were added."""
    rng = random.Random(seed)
    members = [p.member_id for p in people.values() if p.enrolled and p.member_id and p.key != "klaus"]
    members += OTHER_MEMBERS
    # Jonas never books the meeting room, so that his try at its door is plainly "wrong_door".
    jonas = people["jonas"].member_id
    rooms = [("minheim", "coworking", 4), ("minheim", "besprechung", 2), ("wehlen", "coworking", 3)]
    n = 0
    for offset in (-3, -2, -1, 1, 2, 3):
        day = today + dt.timedelta(days=offset)
        if day.weekday() == 6:  # the halls are closed on Sundays
            continue
        for site, room, per_day in rooms:
            for i in range(rng.randint(per_day - 1, per_day + 1)):
                start_h = rng.choice([8, 8, 9, 9, 10, 13, 14])
                hours = rng.choice([2, 3, 4, 4, 8])
                start = dt.datetime.combine(day, dt.time(start_h), TZ)
                end = start + dt.timedelta(hours=min(hours, 19 - start_h))
                bid = f"bk-{day:%m%d}-{site[:3]}-{room[:4]}-{i + 1}"
                member = rng.choice([m for m in members if not (room == "besprechung" and m == jonas)])
                platform.add(bid, county.resource(site, room), member, start, end,
                             status="cancelled" if rng.random() < 0.1 else "confirmed")
                n += 1
    return n


def hub_command() -> list[str]:
    """How to run ``torwart-hub`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "torwart-hub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hub"]


def hub_cli(county: County, *args: str, timeout: float = 120.0) -> str:
    """Run ``torwart-hub ARGS --config HUB.toml``; its output, or RuntimeError with stderr."""
    res = subprocess.run([*hub_command(), *args, "--config", str(county.hub_config_path)],
                         capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"torwart-hub {' '.join(args)} failed ({res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()}")
    return res.stdout


def has_users_command() -> bool:
    """Whether this checkout's ``torwart-hub`` manages dashboard accounts."""
    res = subprocess.run([*hub_command(), "users", "--help"], capture_output=True, timeout=60,
                         stdin=subprocess.DEVNULL, check=False)
    return res.returncode == 0


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path
