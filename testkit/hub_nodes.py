"""Hub nodes as processes: ``python -m hub run`` N times with one configuration, as the
benchmarks and tests need the real hub (its memory, its CPU, its own process).

The nodes share one configuration, written beside the original (so relative paths mean
the same): a copy with the event subscription shared (``[mqtt] shared_subscription``) when
there is more than one node, and, with ``store``, every node on the store at that URL
(``store_setting``; otherwise the configuration's, SQLite in ``data_dir``). Each node is
``python -m hub run --config THAT --node n{i} --listen 127.0.0.1:PORT``, as an operator
starts several nodes from one configuration (tests/hub/test_hub_nodes.py): the node's name
sets it apart (its MQTT client id, its row in ``torwart-hub nodes``), ``--listen`` its HTTP
port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .util import free_port, log_tail, stop_process, wait_for


def store_setting(url: str) -> dict[str, str]:
    """The ``[hub]`` setting that puts a hub on the store at ``url``: ``database`` for
    PostgreSQL (the key of issue #15's PostgreSQL store), ``store`` for SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return {"database": url}
    return {"store": url}


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class HubNode:
    index: int
    name: str
    config_path: Path
    http_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"hub node {self.index} is not running")
        return self.proc.pid

    def health(self) -> dict[str, Any] | None:
        """``/healthz`` of this node, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
                return doc
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def connected(self) -> bool:
        h = self.health()
        return bool(h and h.get("mqtt"))

    def rss(self) -> int:
        return rss_bytes(self.pid)

    @property
    def profile_path(self) -> Path:
        return self.log_path.with_suffix(".prof")

    def log_tail(self, n: int = 30) -> str:
        return log_tail(self.log_path, n)


class HubNodes:
    """``n`` hub processes on the configuration at ``config_path``."""

    def __init__(self, config_path: Path, n: int = 1, *, store: str | None = None, log_level: str = "info",
                 profile: bool = False) -> None:
        """``profile``: run each node under cProfile (its main thread, the hub's loop), the
        statistics written beside its log as ``*.prof`` when it stops."""
        if n < 1:
            raise ValueError("at least one hub node")
        self.config_path = config_path
        self.store = store
        self.log_level = log_level
        self.profile = profile
        doc = tomllib.loads(config_path.read_text())
        if n > 1:
            doc["mqtt"]["shared_subscription"] = True
        if store is not None:
            for key in ("store", "database"):
                doc["hub"].pop(key, None)
            doc["hub"].update(store_setting(store))
        self.node_config = config_path.with_name(f"{config_path.stem}-nodes.toml")
        self.node_config.write_text(tomli_w.dumps(doc))
        self.nodes = [HubNode(i + 1, f"n{i + 1}", self.node_config, free_port(),
                              config_path.with_name(f"{config_path.stem}-n{i + 1}.log")) for i in range(n)]

    def start(self, timeout: float = 120.0) -> HubNodes:
        """Start every node and wait until each answers ``/healthz`` connected to the broker."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent),
                                                        env.get("PYTHONPATH")) if p)
        for node in self.nodes:
            log = node.log_path.open("ab")
            prof = ["-m", "cProfile", "-o", str(node.profile_path)] if self.profile else []
            node.proc = subprocess.Popen(
                [sys.executable, *prof, "-m", "hub", "run", "--config", str(node.config_path), "--node", node.name,
                 "--listen", f"127.0.0.1:{node.http_port}", "--log-level", self.log_level],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
            log.close()
        for node in self.nodes:
            def up(node: HubNode = node) -> bool:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"hub node {node.index} exited with {node.proc.returncode}:\n{node.log_tail()}")
                return node.connected()

            wait_for(up, timeout, interval=0.1, what=f"hub node {node.index} connected to the broker")
        return self

    def all_connected(self) -> bool:
        return all(n.connected() for n in self.nodes)

    def rss(self) -> list[int]:
        return [n.rss() for n in self.nodes]

    def leader(self, store_url: str) -> str | None:
        """The name of the node that holds the leader lease on ``store_url`` now (None: none)."""
        import time

        from hub.store import open_store

        with open_store(store_url) as store:
            lease = store.lease()
        names = {n.name for n in self.nodes}
        if lease is None or lease.holder not in names or lease.expires_at <= time.time():
            return None
        return lease.holder

    def stop(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            if node.proc is not None:
                stop_process(node.proc, timeout)
                node.proc = None

    def __enter__(self) -> HubNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
