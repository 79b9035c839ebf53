"""What scripts/bench_scale reads from its command line and how it reports a run of
several rounds (one per hub node count) side by side: pure functions, tested in
tests/test_scale_sites.py.

A round's results (``bench_scale.run_round``) are a dict with ``nodes``, ``ingest``,
``memory``, ``sync``, ``delta``, ``storm`` and ``leader``; ``rows`` puts the rounds of
a run next to each other, one column per node count.
"""

from __future__ import annotations

from typing import Any

MiB = 1024 * 1024

#: More nodes than this on one machine measure the machine, not the hub.
MAX_NODES = 8


def parse_nodes(text: str) -> list[int]:
    """``--nodes``: one node count or several, comma-separated (``1,2,3``), each 1 to
    MAX_NODES and none twice; ValueError saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    counts = []
    for p in parts:
        if not p.isdigit() or not 1 <= int(p) <= MAX_NODES:
            raise ValueError(f"--nodes {text!r}: {p!r} is not a node count from 1 to {MAX_NODES}")
        counts.append(int(p))
    if len(set(counts)) != len(counts):
        raise ValueError(f"--nodes {text!r}: a node count is given twice")
    return counts


def store_choice(text: str | None, rounds: int) -> str:
    """``--store``: ``sqlite`` (None, the default: SQLite in each round's data directory),
    ``postgres`` (a temporary PostgreSQL server, a fresh database per round) or a
    ``postgresql://`` URL (an empty store of your own: one round only, since every round
    needs a fresh store); the choice, ValueError otherwise."""
    if text is None or text == "sqlite":
        return "sqlite"
    if text == "postgres":
        return text
    if text.startswith(("postgresql://", "postgres://")):
        if rounds > 1:
            raise ValueError("--store URL: one node count only (each round needs an empty store); "
                             "use --store postgres for several")
        return text
    raise ValueError(f"--store {text!r}: sqlite, postgres or a postgresql:// URL")


def _per(rounds: list[dict[str, Any]], fmt: Any) -> str:
    return " | ".join(fmt(r) for r in rounds)


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The table of a run (``r["rounds"]``: one per node count): (what, figures side by
    side as ``N nodes: x | ...``, note)."""
    rounds: list[dict[str, Any]] = r["rounds"]
    head = " | ".join(f"{x['nodes']} node{'s' if x['nodes'] > 1 else ''}" for x in rounds)
    sites = r["sites"]

    def ratio(x: dict[str, Any]) -> str:
        return f"{x['ingest']['hub_per_s'] / x['ingest']['bare_per_s']:.2f}"

    def node_rss(x: dict[str, Any]) -> str:
        return "/".join(f"{b / MiB:.0f}" for b in x["memory"]["hub_rss_sites"])

    def node_site(x: dict[str, Any]) -> str:
        m = x["memory"]
        return "/".join(f"{(b - a) / sites / 1024:.1f}" for a, b in zip(m["hub_rss_no_sites"], m["hub_rss_sites"],
                                                                       strict=True))

    def sync(x: dict[str, Any]) -> str:
        return f"{x['sync']['seconds_to_all_applied']:.1f} s"

    def storm(x: dict[str, Any]) -> str:
        return f"{x['storm']['seconds_settled']:.1f} s"

    return [
        ("store; hub nodes (each round: fresh broker, store, sites)", r["store"], head),
        (f"bare paho subscriber, events/s ({sites:,} sites publishing)",
         _per(rounds, lambda x: f"{x['ingest']['bare_per_s']:,.0f}"), "measured in each round, before its hub"),
        ("hub: stored durably + acked, events/s", _per(rounds, lambda x: f"{x['ingest']['hub_per_s']:,.0f}"),
         "ratio to bare " + _per(rounds, ratio)),
        (f"{r['bookings']:,} bookings: first page → every site holds its latest (leader's job)", _per(rounds, sync),
         "goal < 60 s; paging " + _per(rounds, lambda x: f"{x['sync']['seconds_paging']:.1f} s")
         + "; all at the store's latest: " + _per(rounds, lambda x: str(x["sync"]["all_at_latest"]))),
        (f"{rounds[0]['delta']['bookings']} bookings cancelled: first page → every site holds its latest",
         _per(rounds, lambda x: f"{x['delta']['seconds_to_all_applied']:.1f} s"),
         "deltas/fulls " + _per(rounds, lambda x: f"{x['delta']['deltas']}/{x['delta']['fulls']}")),
        ("broker restart: every site and hub node back, events acked again", _per(rounds, storm),
         "goal < 60 s; sites back at " + _per(rounds, lambda x: f"{x['storm']['seconds_all_sites_connected']:.1f} s")
         + "; sessions resumed " + _per(rounds, lambda x: f"{x['storm']['sessions_resumed']}/{x['storm']['sites']}")),
        ("  full caches received by sites: sent by the hub / retained re-sent by the broker",
         _per(rounds, lambda x: f"{x['storm']['fulls_from_hub']}/{x['storm']['fulls_retained_again']}"),
         "goal 0/0 for sites at the latest version: "
         + _per(rounds, lambda x: f"{x['storm']['fulls_from_hub_to_sites_at_latest']}/"
                                  f"{x['storm']['fulls_retained_again_to_sites_at_latest']}")),
        ("hub memory per connected site, all nodes",
         _per(rounds, lambda x: f"{x['memory']['per_site_bytes'] / 1024:.1f} KiB"),
         "per node (KiB): " + _per(rounds, node_site)),
        ("hub RSS per node with every site connected (MiB)", _per(rounds, node_rss),
         "leader: " + _per(rounds, lambda x: str(x.get("leader")))),
        ("machine load average (1, 5, 15 min)", "", f"start {r['machine']['loadavg_start']}, "
         f"end {r['machine']['loadavg_end']}, {r['machine']['cpus']} CPUs"),
    ]
