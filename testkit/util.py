"""Small helpers: free ports, waiting on conditions (never fixed sleeps), stopping processes."""

from __future__ import annotations

import errno
import os
import queue
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Where the kernel picks the local ports of outgoing connections when /proc does not say.
DEFAULT_EPHEMERAL = (32768, 60999)
#: The lowest port ``free_port`` hands out (below: well-known and registered services).
LOWEST_PORT = 20000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_handed_lock = threading.Lock()
_rng = random.SystemRandom()


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (inclusive)."""
    try:
        lo, hi = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return lo, hi


def port_candidates(ephemeral: tuple[int, int]) -> range:
    """Where ``free_port`` looks: below the ephemeral range (from ``LOWEST_PORT``), or above
    it if too little room is left below, or anywhere unprivileged outside it as a last resort."""
    lo, hi = ephemeral
    if lo - LOWEST_PORT >= 1000:
        return range(LOWEST_PORT, lo)
    above = range(hi + 1, 65536)
    if len(above) >= 1000:
        return above
    below = range(1024, lo)
    best = max(below, above, key=len)
    return best if len(best) else range(1024, 65536)


def worker_share(ports: range, env: Mapping[str, str] = os.environ) -> range:
    """The part of ``ports`` this test worker picks from: with pytest-xdist's N workers
    (``PYTEST_XDIST_WORKER`` = gwK, ``PYTEST_XDIST_WORKER_COUNT`` = N; the processes a test
    starts inherit them) every N-th port from the K-th, so that two workers never pick the
    same port, even one a server is being restarted on; all of ``ports`` otherwise. (A
    worker and the processes it starts share one share, each picking at random.)"""
    worker, count = env.get("PYTEST_XDIST_WORKER", ""), env.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1):
        return ports
    k, n = int(worker[2:]), int(count)
    return range(ports.start + k % n, ports.stop, n)


def _bindable(host: str, port: int) -> bool:
    """Nothing (listener, connection, TIME_WAIT) holds ``host:port``: a bind without
    SO_REUSEADDR succeeds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing uses right now, outside the kernel's ephemeral range.

    A server that is restarted on the same port (Mosquitto, the hub, a proxy) must not get
    a port from the ephemeral range: while it is down, any outgoing connection on the
    machine may take that port as its local port and the restart fails with "address
    already in use". The port is picked at random (so that test processes running side by
    side rarely try the same one), checked bindable, and never handed out twice by one
    process."""
    candidates = worker_share(port_candidates(ephemeral_range()))
    for _ in range(200):
        port = _rng.choice(candidates)
        with _handed_lock:
            if port in _handed_out:
                continue
            if _bindable(host, port):
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free port found in {candidates.start}-{candidates.stop - 1} on {host}")


def wait_for(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "condition") -> T:
    """Poll ``cond`` until it returns something truthy and return that; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def next_matching(q: queue.Queue[T], match: Callable[[T], bool], timeout: float, what: str = "matching item") -> T:
    """The next item taken from ``q`` within ``timeout`` seconds for which ``match`` holds
    (the items before it are taken and dropped); TimeoutError ("no WHAT within N s") if none."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {what} within {timeout} s")
        try:
            item = q.get(timeout=left)
        except queue.Empty:
            continue
        if match(item):
            return item


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL; the exit status (negative:
    the signal that ended it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def log_tail(path: Path, n: int = 30) -> str:
    """The last ``n`` lines of a server's log file (``(no log)`` when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"
