"""What the rogue site, the replayed webhooks and the reinstall (testkit.chaos_rogue,
testkit.chaos_attacks) must not have achieved, gathered after the run converged
(``gather``) and judged from the report alone (``verdicts``), so that a fabricated report
tests the judge (tests/test_chaos_check.py).

Verdicts:

- ``rogue_takeover_kicked_no_one`` (item 6): the broker never let the rogue's login in
  under the hub's or a real site's client id (its log names every connection's client id
  and user), and the hub lost its broker connection no more often than the broker was killed;
- ``rogue_share_hijack_got_nothing`` (item 7): the rogue's subscriptions in the hub's
  shared group and on ``#`` received no message of another site (nothing lost is
  ``events_lost_zero``);
- ``rogue_integers_left_others_whole`` (item 8) / ``rogue_payloads_bounded`` (item 9):
  every real site's events stored, every cache converged, the hub never crashed; no value in
  any table of the hub store over ``ROW_LIMIT`` bytes (also right after the 4 MB occupancy);
- ``rogue_checkins_not_forwarded`` (item 10): the platform recorded no check-in for the
  other sites' bookings the rogue named;
- ``webhooks_accepted`` / ``replayed_webhooks_changed_nothing`` (item 13): fresh webhooks
  answered 200; after the replays every cancelled booking is cancelled in the hub store
  and out of its site's cache;
- ``reinstalled_site_lost_nothing`` (item 14): the reinstalled site lost no event of
  either stream;
- ``rogue_stream_not_held_by_unknown_event`` (item 15): the events after the rogue's
  ``door.exploded`` were acknowledged.

Each also needs its attack done (counted) at least once: an attack that never happened
proves nothing.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chaos_check import log_lines, ro
from .chaos_db import HubDb, is_pg, store_bytes, tables_and_columns

if TYPE_CHECKING:
    from .chaos import World
    from .chaos_faults import Faults

ROW_LIMIT = 2 * 1024 * 1024
_CONNECTED = re.compile(r"New client connected from \S+ as (\S+) \(.*u'([^']*)'\)")


def logins_as(broker_log: Path, user: str, client_ids: set[str]) -> int:
    """Connections the broker accepted from ``user`` under one of ``client_ids``."""
    n = 0
    for line in log_lines(broker_log, "New client connected from"):
        mt = _CONNECTED.search(line)
        n += bool(mt and mt.group(2) == user and mt.group(1) in client_ids)
    return n


def largest_value(db: HubDb) -> dict[str, Any]:
    """The longest value in any column of any table of ``db`` (wherever a hub keeps what
    it received), where it is, and the store's size (the file with its WAL, or the
    PostgreSQL database)."""
    best, where = 0, ""
    as_text = "::text" if is_pg(db) else ""
    with contextlib.closing(ro(db)) as conn:
        for t, cols in tables_and_columns(conn, db).items():
            for col in cols:
                n = conn.execute(f'SELECT max(length("{col}"{as_text})) FROM "{t}"').fetchone()[0] or 0  # noqa: S608 (the store's own names)
                if n > best:
                    best, where = int(n), f"{t}.{col}"
    return {"largest_value": best, "where": where, "store_bytes": store_bytes(db)}


def _booking_status(hub_db: HubDb, booking: str) -> str | None:
    with contextlib.closing(ro(hub_db)) as conn:
        row = conn.execute("SELECT status FROM bookings WHERE id = ?", (booking,)).fetchone()
    return None if row is None else str(row[0])


def _cache_refs(data_dir: Path, ref: str) -> int:
    path = data_dir / "cache.db"
    if not path.exists():
        return 0
    try:
        with contextlib.closing(ro(path)) as conn:
            return int(conn.execute("SELECT count(*) FROM entries WHERE ref = ?", (ref,)).fetchone()[0])
    except sqlite3.Error:
        return -1  # unreadable: counts as not shown to be out


def gather(world: World, faults: Faults, per_site: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The report's ``rogue`` part (after convergence; the rogue resends what is not yet
    acknowledged first, as a site would)."""
    r = world.rogue_site
    r.settle(timeout=30)
    hub_drops = log_lines(world.hub.log, " WARNING hub.link: disconnected from the broker")
    with world.platform.lock:
        checked_in = {bid for bid, _ in world.platform.checkins}
    cycles = []
    for c in faults.webhook_cycles:
        d = c.as_dict()
        d["hub_status"] = _booking_status(world.hub_db, c.booking)
        d["site_cache_entries"] = _cache_refs(world.data_dir(c.site), c.booking)
        cycles.append(d)
    reinstalls = [{**x, "check": {k: per_site.get(x["site"], {}).get(k) for k in ("ok", "missing",
                                                                                  "missing_before_reinstall")}}
                  for x in faults.reinstalls]
    return {**r.report(),
            "hub_disconnects": len(hub_drops),
            "rogue_logins_as_others": logins_as(world.broker.log_path, r.site,
                                                {r.hub_client_id, r.victim_client_id}),
            "checkins_forwarded": sorted(checked_in & set(r.checkin_refs)),
            "store": largest_value(world.hub_db),
            "webhooks": cycles,
            "reinstalls": reinstalls}


def verdicts(rep: dict[str, Any]) -> dict[str, bool]:
    """The rogue's verdicts from a whole chaos report."""
    g = rep.get("rogue", {})
    counts = Counter(rep.get("faults", {}).get("counts", {}))
    ev = rep.get("events", {})
    others_whole = (ev.get("lost", 1) == 0 and ev.get("sites_ok") == rep.get("sites")
                    and not rep.get("caches", {}).get("not_converged", {"?": 0})
                    and not any(c.get("process") == "hub" for c in rep.get("crashes", [{"process": "hub"}])))
    store = g.get("store", {})
    hooks = g.get("webhooks", [])
    reinstalls = g.get("reinstalls", [])
    seq = g.get("unknown_seq")
    return {
        "rogue_takeover_kicked_no_one": (counts["rogue_takeover_hub"] > 0 and counts["rogue_takeover_site"] > 0
                                         and g.get("rogue_logins_as_others", 1) == 0
                                         and g.get("hub_disconnects", 1) <= counts["broker_kill"]),
        "rogue_share_hijack_got_nothing": counts["rogue_share_hijack"] > 0 and g.get("share_foreign_messages", 1) == 0,
        "rogue_integers_left_others_whole": counts["rogue_integers"] > 0 and others_whole,
        "rogue_payloads_bounded": (counts["rogue_payloads"] > 0 and others_whole
                                   and store.get("largest_value", ROW_LIMIT + 1) <= ROW_LIMIT
                                   and g.get("occupancy_row_max", ROW_LIMIT + 1) <= ROW_LIMIT),
        "rogue_checkins_not_forwarded": (counts["rogue_foreign_checkins"] > 0 and bool(g.get("checkin_refs"))
                                         and not g.get("checkins_forwarded", [1])),
        "webhooks_accepted": (counts["webhook_pushed"] > 0 and bool(hooks)
                              and all(h["confirm_status"] == 200 and h["cancel_status"] == 200 for h in hooks)),
        "replayed_webhooks_changed_nothing": (counts["webhook_replayed"] > 0 and bool(hooks)
                                              and all(h["cancel_status"] is not None and h["replay_statuses"]
                                                      and h["hub_status"] == "cancelled"
                                                      and h["site_cache_entries"] == 0 for h in hooks)),
        "reinstalled_site_lost_nothing": (counts["site_reinstall"] > 0 and bool(reinstalls)
                                          and all(x["check"].get("ok") and x["check"].get("missing") == 0
                                                  for x in reinstalls)),
        "rogue_stream_not_held_by_unknown_event": (counts["rogue_unknown_event"] > 0 and seq is not None
                                                   and g.get("emitted", 0) > seq
                                                   and g.get("acked", 0) >= g.get("emitted", 1)),
    }


def table_rows(rep: dict[str, Any], ok: Any) -> list[tuple[str, str, str]]:
    g = rep.get("rogue", {})
    c = Counter(rep.get("faults", {}).get("counts", {}))
    store = g.get("store", {})
    hooks = g.get("webhooks", [])
    largest = max(store.get("largest_value", 0), g.get("occupancy_row_max", 0))
    return [
        ("rogue: client-id takeovers (hub / site)", f"{c['rogue_takeover_hub']} / {c['rogue_takeover_site']}",
         f"{g.get('hub_disconnects', '?')} hub disconnects for {c['broker_kill']} broker kills; "
         + ok("rogue_takeover_kicked_no_one")),
        ("rogue: shared-subscription hijacks", str(c["rogue_share_hijack"]),
         f"{g.get('share_foreign_messages', '?')} foreign messages; " + ok("rogue_share_hijack_got_nothing")),
        ("rogue: huge and negative integers", str(c["rogue_integers"]), ok("rogue_integers_left_others_whole")),
        ("rogue: 20 MB event + 4 MB occupancy", str(c["rogue_payloads"]),
         f"largest hub row {largest // 1024} KiB; " + ok("rogue_payloads_bounded")),
        ("rogue: check-ins for other sites' bookings", str(len(g.get("checkin_refs", []))),
         f"{len(g.get('checkins_forwarded', []))} forwarded; " + ok("rogue_checkins_not_forwarded")),
        ("rogue: unknown event type, then its stream", f"acked {g.get('acked', '?')} of {g.get('emitted', '?')}",
         ok("rogue_stream_not_held_by_unknown_event")),
        ("webhooks pushed / replayed", f"{c['webhook_pushed']} / {c['webhook_replayed']}",
         ok("webhooks_accepted") + "; replays: " + ok("replayed_webhooks_changed_nothing")
         + f" ({sum(h.get('hub_status') == 'cancelled' for h in hooks)} of {len(hooks)} stayed cancelled)"),
        ("sites reinstalled (data wiped)", str(c["site_reinstall"]), ok("reinstalled_site_lost_nothing")),
    ]
