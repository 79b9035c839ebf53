"""Many simulated sites (testkit.scale_sites) in a few worker processes, driven from the
benchmark's process: start them, read every site's state, make them badge, stop them.

    with Fleet(SimConfig(...), logins) as fleet:
        fleet.wait(lambda reps: all(r.version == v for r in reps), 60, what="every site at v")

Each worker process runs one ``SiteLoop`` of at most ``per_process`` sites and answers
commands on a pipe between rounds of network work; nothing else crosses the pipe. The
workers are spawned (not forked): the benchmark's process has threads (paho, the booking
fake) that a fork would copy in an unknown state.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from .scale_sites import SimConfig, SiteLogin, SiteLoop, SiteReport

log = logging.getLogger(__name__)

#: How long a worker may take to answer a command before the fleet gives up on it.
ANSWER_SECONDS = 120.0


def _worker(conn: Connection, cfg: SimConfig, logins: list[SiteLogin], log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s[sites]: %(message)s")
    loop = SiteLoop(cfg, logins)
    loop.selector_register(conn)
    while True:
        loop.poll(0.1)
        while conn.poll():
            cmd, arg = conn.recv()
            if cmd == "snapshot":
                conn.send(loop.reports())
            elif cmd == "badge":
                for _ in range(arg):
                    for s in loop.sites:
                        s.badge()
                conn.send(arg * len(loop.sites))
            elif cmd == "stop":
                loop.stop(goodbye=arg)
                conn.send(True)
                conn.close()
                return


class Fleet:
    """``logins`` as simulated sites in ``ceil(len / per_process)`` worker processes."""

    def __init__(self, cfg: SimConfig, logins: Sequence[SiteLogin], *, per_process: int = 500,
                 log_level: int = logging.WARNING) -> None:
        if per_process < 1:
            raise ValueError("per_process must be at least 1")
        self.cfg = cfg
        self.logins = list(logins)
        self.per_process = per_process
        self.log_level = log_level
        self._workers: list[tuple[Any, Connection]] = []

    def start(self) -> Fleet:
        ctx = mp.get_context("spawn")
        for i in range(0, len(self.logins), self.per_process):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, self.cfg, self.logins[i : i + self.per_process],
                                                     self.log_level), name=f"sites-{i // self.per_process}",
                               daemon=True)
            proc.start()
            child.close()
            self._workers.append((proc, parent))
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._workers]

    def _ask(self, cmd: str, arg: Any = None, timeout: float = ANSWER_SECONDS) -> list[Any]:
        for _, conn in self._workers:
            conn.send((cmd, arg))
        out = []
        for proc, conn in self._workers:
            if not conn.poll(timeout):
                raise RuntimeError(f"site worker {proc.name} did not answer {cmd!r} within {timeout:.0f} s")
            out.append(conn.recv())
        return out

    def snapshot(self) -> list[SiteReport]:
        """Every site's state now."""
        return [r for part in self._ask("snapshot") for r in part]

    def wait(self, cond: Callable[[list[SiteReport]], bool], timeout: float, *, what: str,
             interval: float = 0.2) -> list[SiteReport]:
        """Read the sites' states until ``cond`` holds for them; those states. TimeoutError
        (naming ``what``) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            reps = self.snapshot()
            if cond(reps):
                return reps
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def badge(self, per_site: int) -> int:
        """Every site emits ``per_site`` events now; how many in all."""
        return sum(self._ask("badge", per_site))

    def stop(self, *, goodbye: bool = True) -> None:
        """Stop every site (``goodbye``: the retained offline status first, as the agent
        does on SIGTERM) and end the workers."""
        try:
            if self._workers:
                self._ask("stop", goodbye, timeout=30)
        except (RuntimeError, OSError, EOFError) as exc:
            log.warning("stopping the simulated sites: %s", exc)
        for proc, conn in self._workers:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._workers = []

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
