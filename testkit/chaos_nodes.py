"""The chaos run's multi-node variant (``scripts/chaos --nodes 3 --store postgres``): the
hub as three ``torwart-hub run --node nK`` processes on one configuration, sharing a
temporary PostgreSQL (testkit.postgres), under the same badge load and faults as the
default run, plus faults of its own on one thread, one at a time (so that two nodes are
always up), at seeded moments in the fault phase:

- ``leader``: SIGKILL the node that holds the lease (the store's ``lease()``);
- ``other``: SIGKILL a node that does not;
- ``publish``: change bookings at the platform fake (two small sites and a big one), watch
  the leader's log and SIGKILL it the moment it logs the first new cache version of them
  (its sync has run, the versions are being built and published); afterwards its log says
  whether the kill landed in the middle (a version built but not published, or a changed
  site not reached yet): ``publish_kill_landed`` counts those;
- ``postgres``: stop PostgreSQL (fast shutdown: every session cut), start it again on the
  same data directory and port after a few seconds.

Each killed node is started again after a while (the fault thread, the report and the
verdicts: testkit.chaos_nodes_faults). The checks are testkit.chaos_nodes_check
(singleton jobs never on two nodes at once, leadership changes and their durations); the
default run's checks read the store through testkit.chaos_db.
"""

from __future__ import annotations

import atexit
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from hub.config import HubConfig
from hub.link import node_client_id

from .chaos_procs import Proc
from .chaos_rogue import RogueSite
from .postgres import Postgres
from .util import free_port


@dataclass(frozen=True)
class NodesSize:
    nodes: int
    lease_seconds: float
    leader_kills: int
    other_kills: int
    publish_kills: int
    pg_restarts: int
    down_seconds: tuple[float, float]
    pg_down_seconds: tuple[float, float]
    no_show_minutes: int
    #: What changes in the default run's size for this variant (hub_kills: these faults replace them).
    base: dict[str, Any] = field(default_factory=dict)


NODE_SIZES = {
    "full": NodesSize(3, 15.0, leader_kills=4, other_kills=4, publish_kills=4, pg_restarts=1, down_seconds=(2, 15),
                      pg_down_seconds=(4, 10), no_show_minutes=5,
                      # a shorter fault phase than the default run's: fewer kills of an agent
                      # mid-apply fit (each waits for a sync and a build, and the platform fails
                      # for minutes: three runs of seed 20261204 made 13-15 tries and landed 8,
                      # 10 and 12; the default run's 22 cover this fault at length); the steady
                      # phase as long as the default's, so that the nodes' memory spans enough
                      base={"hub_kills": 0, "fault_seconds": 360, "steady_seconds": 120, "apply_kills": 6}),
    "short": NodesSize(3, 5.0, leader_kills=1, other_kills=1, publish_kills=1, pg_restarts=1, down_seconds=(2, 6),
                       pg_down_seconds=(3, 5), no_show_minutes=5,
                       base={"hub_kills": 0, "big_bookings": 1500, "fault_seconds": 80}),
}


@dataclass
class Cluster:
    """The multi-node variant's parts (``World.cluster``)."""

    size: NodesSize
    pg: Postgres
    urls: dict[str, str]  # label ("hub nK") → HTTP base URL
    kills: dict[str, list[float]] = field(default_factory=dict)  # node → wall times of its SIGKILLs
    records: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: float = 0.0
    #: When the last killed node was started again (wall time).
    last_start: float = 0.0


def start_store(say: Any) -> tuple[Postgres, str]:
    """A fresh PostgreSQL server and database for the run; (server, URL without password)."""
    pg = Postgres().start()
    atexit.register(pg.remove)  # also when the run fails before its own cleanup
    url = pg.url(pg.create_db("torwart_chaos"))
    say(f"postgresql {pg.bindir.parent.name} on port {pg.port} ({pg.workdir})")
    return pg, url


def configure(config_path: Path, pg: Postgres, ns: NodesSize) -> None:
    """The county's hub.toml for several nodes: the password in a file, the lease, the
    shared subscription, the no-show release (a singleton job to watch)."""
    pw = config_path.parent / "database.password"
    pw.write_text(pg.password + "\n")
    pw.chmod(0o600)
    doc = tomllib.loads(config_path.read_text())
    doc["hub"].update(database_password_file=pw.name, leader_lease_seconds=ns.lease_seconds)
    doc["mqtt"]["shared_subscription"] = True
    doc["booking"]["no_show_minutes"] = ns.no_show_minutes
    config_path.write_text(tomli_w.dumps(doc))


def node_procs(config_path: Path, port: int, ns: NodesSize) -> tuple[dict[str, Proc], dict[str, str]]:
    """One ``torwart-hub run --node nK`` per node (n1 on the configuration's own port);
    (label → process, label → HTTP base URL)."""
    procs, urls = {}, {}
    for i in range(1, ns.nodes + 1):
        p = port if i == 1 else free_port()
        label = f"hub n{i}"
        procs[label] = Proc(label, [sys.executable, "-m", "hub", "run", "--config", str(config_path), "--node",
                                    f"n{i}", "--listen", f"127.0.0.1:{p}", "--log-level", "info"],
                            config_path.parent / f"n{i}.log")
        urls[label] = f"http://127.0.0.1:{p}"
    return procs, urls


def adapt_rogue(rogue: RogueSite, cfg: HubConfig, node: str) -> None:
    """The rogue site against a node: it tries to take over node ``node``'s MQTT client id."""
    rogue.hub_client_id = node_client_id(cfg.mqtt, node)


def node_of(label: str) -> str:
    return label.removeprefix("hub ")
