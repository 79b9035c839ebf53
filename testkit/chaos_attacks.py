"""The attack threads of the chaos run beside the classic faults (testkit.chaos_faults):

- the rogue site's attacks at planned moments (testkit.chaos_rogue, items 6-10 and 15);
- ``webhook_pushed`` / ``webhook_replayed``: the platform pushes signed booking webhooks
  (PROTOCOL.md §5: ``X-Torwart-Timestamp`` and ``X-Torwart-Signature: sha256=HMAC(secret,
  TIMESTAMP.BODY)``) for a booking it confirms and then cancels; an eavesdropper replays the
  confirmation byte for byte afterwards (item 13);
- ``site_reinstall``: a real site's data directory wiped once (a reinstall: its outbox
  starts again at seq 1), its old outbox kept aside for the check (item 14).

Each counts what it has done in ``Faults.counts`` and records what the checks need.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import sqlite3
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .chaos_data import iso
from .chaos_events import outbox_state
from .chaos_rogue import ATTACKS

if TYPE_CHECKING:
    from .chaos import World


class AttackPlan(Protocol):
    """The attacks' part of the fault plan (``plan`` below makes it): planned moments, in
    seconds into the fault phase."""

    @property
    def rogue(self) -> list[tuple[float, str]]: ...

    @property
    def webhooks(self) -> list[float]: ...

    @property
    def reinstalls(self) -> list[tuple[float, str]]: ...


class Faults(Protocol):
    """What the attacks need of the fault phase (testkit.chaos_faults.Faults is one): the
    world, the plan, its pacing and where the attacks record what they did."""

    @property
    def world(self) -> World: ...

    @property
    def plan(self) -> AttackPlan: ...

    @property
    def counts(self) -> Counter[str]: ...

    @property
    def webhook_cycles(self) -> list[WebhookCycle]: ...

    @property
    def reinstalls(self) -> list[dict[str, Any]]: ...

    def at(self, t: float) -> bool:
        """Wait until ``t`` seconds into the fault phase; False if the phase is stopping."""

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the phase is stopping."""


def plan(world: World, seed: int, spread: Callable[[random.Random, int, float, float], list[float]],
         killable: list[str]) -> dict[str, Any]:
    """The ``rogue``, ``webhooks`` and ``reinstalls`` parts of the fault plan, from a
    random stream of their own (the classic faults' plan stays as it was)."""
    sz = world.size
    T = sz.fault_seconds
    rng = random.Random(f"{seed}:rogue-plan")
    # The payloads go early, before the hub's and the broker's last lives begin (whose
    # memory is judged); the other attacks at random moments after.
    rest = [a for a in ATTACKS if a != "payloads"] * sz.rogue_rounds
    rng.shuffle(rest)
    rogue = [(t, "payloads") for t in spread(rng, sz.rogue_rounds, 0.05 * T, 0.25 * T)]
    rogue += list(zip(spread(rng, len(rest), 0.25 * T, 0.9 * T), rest, strict=True))
    # A reinstall leaves alone the big sites (cache applies are killed there), the disk-full
    # and the clock sites (one of them is whose client id the rogue takes).
    busy = {*world.pop.big, *world.clock_sites, world.disk_site or "", world.rogue_site.victim}
    spare = [s for s in killable if s not in busy]
    return {"rogue": rogue, "webhooks": spread(rng, sz.webhook_cycles, 0, 0.8 * T),
            "reinstalls": [(t, spare[i % len(spare)])
                           for i, t in enumerate(spread(rng, sz.reinstalls, 0.2 * T, 0.6 * T))]}


@dataclass
class Pushed:
    """One webhook request as sent (so that it can be replayed byte for byte)."""

    body: bytes
    headers: dict[str, str]
    status: int | None = None


def sign_webhook(body: bytes, secret: bytes, ts: int) -> dict[str, str]:
    """The headers of PROTOCOL.md §5 for ``body`` sent at ``ts``."""
    mac = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Torwart-Timestamp": str(ts), "X-Torwart-Signature": f"sha256={mac}"}


def post_once(url: str, req: Pushed) -> int | None:
    """POST ``req`` to the hub's webhook: the HTTP status, or None if the hub did not answer."""
    r = urllib.request.Request(url, data=req.body, method="POST", headers=req.headers)  # noqa: S310 (our hub)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def post_webhook(url: str, make: Callable[[], Pushed], *, retry_for: float = 30.0) -> Pushed:
    """POST what ``make()`` returns; while the hub is down (killed by a fault) or answers
    503 (its store is unavailable: the multi-node variant restarts PostgreSQL) again, for
    up to ``retry_for`` s, with what ``make()`` returns then (a platform signs its retry
    anew; a replayer sends the same bytes). The request last sent, with its status."""
    deadline = time.monotonic() + retry_for
    while True:
        req = make()
        req.status = post_once(url, req)
        if req.status not in (None, 503) or time.monotonic() > deadline:
            return req
        time.sleep(0.5)  # pacing: the hub is restarting


@dataclass
class WebhookCycle:
    booking: str
    site: str
    confirm: Pushed
    cancel: Pushed | None = None
    replays: list[int | None] = field(default_factory=list)

    def replay(self, url: str) -> None:
        """The confirmation again, byte for byte (headers included)."""
        c = self.confirm
        self.replays.append(post_webhook(url, lambda: Pushed(c.body, c.headers)).status)

    def as_dict(self) -> dict[str, Any]:
        return {"booking": self.booking, "site": self.site, "confirm_status": self.confirm.status,
                "cancel_status": self.cancel.status if self.cancel else None, "replay_statuses": self.replays}


def webhooks(f: Faults) -> None:
    """Per planned moment: a booking confirmed (pushed), cancelled (pushed), then the
    confirmation replayed; at the end every confirmation replayed once more."""
    w = f.world
    url = f"{w.county.http_url}/api/v1/webhooks/booking"
    secret = w.county.webhook_secret
    small = [s for s in sorted(w.sites) if s not in w.pop.big]
    members = sorted(mid for mid, creds in w.pop.members.items() if creds and mid.startswith("m-"))

    def push(doc: dict[str, Any]) -> Pushed:
        body = json.dumps(doc).encode()
        req = post_webhook(url, lambda: Pushed(body, sign_webhook(body, secret, int(time.time()))))
        f.counts["webhook_pushed"] += 1
        return req

    for i, t in enumerate(f.plan.webhooks):
        if not f.at(t):
            break
        site = small[i % len(small)]
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        b = w.platform.put({"id": f"bk-webhook-{i:03d}", "resource_id": w.county.resource(site),
                            "member_id": members[(7 * i) % len(members)], "start": iso(now - dt.timedelta(minutes=5)),
                            "end": iso(now + dt.timedelta(hours=3)), "status": "confirmed", "pin": None})
        cycle = WebhookCycle(b["id"], site, push(b))
        f.webhook_cycles.append(cycle)
        w.say(f"fault: webhook confirms {b['id']} at {site} (HTTP {cycle.confirm.status})")
        if not f.sleep(3):
            break
        cycle.cancel = push(w.platform.cancel(b["id"]))
        w.say(f"fault: webhook cancels {b['id']} (HTTP {cycle.cancel.status})")
        if not f.sleep(3):
            break
        cycle.replay(url)
        f.counts["webhook_replayed"] += 1
        w.say(f"fault: webhook confirmation of {b['id']} replayed (HTTP {cycle.replays[-1]})")
    f.sleep(5)
    for cycle in f.webhook_cycles:  # later once more, after the other faults moved on
        if cycle.cancel is not None:
            cycle.replay(url)
            f.counts["webhook_replayed"] += 1


def reinstall(f: Faults) -> None:
    """Wipe one real site's data directory (its agent SIGKILLed first); keep its old outbox."""
    w = f.world
    for n, (t, site) in enumerate(f.plan.reinstalls):
        if not f.at(t):
            return
        a = w.agents[site]
        data = w.data_dir(site)
        with a.lock:
            a.kill()
            last, acked = outbox_state(data, site)
            copy = w.sites[site].dir / f"outbox-before-reinstall-{n}.db"
            with closing(sqlite3.connect(data / "outbox.db")) as src, closing(sqlite3.connect(copy)) as dst:
                src.backup(dst)
            for p in data.iterdir():
                if p.is_file():  # the databases (the readers' FIFOs stay: they are not data)
                    p.unlink()
            f.counts["site_reinstall"] += 1
            f.reinstalls.append({"site": site, "old_outbox": str(copy), "old_last_seq": last, "old_acked": acked})
            w.say(f"fault: {site} reinstalled (data directory wiped; its outbox had {last} events, "
                  f"{acked} acknowledged)")
            f.sleep(1)
            a.start()


def rogue(f: Faults) -> None:
    """The rogue site's attacks at their planned moments."""
    w = f.world
    r = w.rogue_site
    for t, name in f.plan.rogue:
        if not f.at(t):
            return
        before = sum(r.counts.values())
        r.attack(name)
        for kind, n in r.counts.items():
            f.counts[kind] = n
        w.say(f"fault: rogue site tried {name} ({'done' if sum(r.counts.values()) > before else 'not delivered'})")
