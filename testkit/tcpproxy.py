"""A small TCP forwarder on the loopback interface that a test can cut off and heal.

Each site of the chaos run reaches the broker through its own ``TcpProxy``, so that one
site can lose its uplink for a while (the broker and every other site carry on):

- ``cut()`` drops every connection at once (both ends see the close) and refuses new ones:
  they are accepted and closed at once, as a dead uplink would answer;
- ``cut(blackhole=True)`` keeps the connections open but silently discards every byte in
  both directions (a half-open link: only keepalives notice), and refuses new ones;
- ``heal()`` lets connections through again (blackholed ones are closed then, as a router
  that lost its state would).

Threads: one accepting, two per connection (one per direction), blocking sockets. That is
plenty for a dozen sites and keeps the forwarding obviously correct.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from .util import free_port

log = logging.getLogger(__name__)

_CHUNK = 65536


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0
    upstream_failed: int = 0
    cuts: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped_bytes: int = 0


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket
    blackholed: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class TcpProxy:
    """Forward ``host:port`` (a free port unless given) to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0,
                 name: str = "proxy", record: bool = False) -> None:
        self.target = (target_host, target_port)
        self.name = name
        self.stats = ProxyStats()
        #: With ``record``: every chunk forwarded, in order, as (upstream?, bytes): what someone
        #: recording the traffic on the way saw.
        self.recording: list[tuple[bool, bytes]] | None = [] if record else None
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._blocked = False
        self._blackhole = False
        self._stopping = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Outside the ephemeral range (testkit.util.free_port): a proxy stopped and started
        # again on its port must find it free.
        self._listener.bind((host, port or free_port(host)))
        self._listener.listen(64)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)

    # --- control -----------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        self._drop_all()
        self._thread.join(5)

    def cut(self, *, blackhole: bool = False) -> None:
        """Cut the link: drop (or blackhole) every connection and refuse new ones."""
        with self._lock:
            self._blocked = True
            self._blackhole = blackhole
            self.stats.cuts += 1
            pairs = list(self._pairs)
        if blackhole:
            for p in pairs:
                p.blackholed = True
        else:
            self._drop_all()
        log.info("%s: cut (%s)", self.name, "blackhole" if blackhole else "drop")

    def heal(self) -> None:
        """Let connections through again; blackholed ones are closed now."""
        with self._lock:
            self._blocked = False
            self._blackhole = False
            stale = [p for p in self._pairs if p.blackholed]
        for p in stale:
            self._forget(p)
        log.info("%s: healed", self.name)

    @property
    def blocked(self) -> bool:
        return self._blocked

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- forwarding ----------------------------------------------------------------------

    def _drop_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for p in pairs:
            self._forget(p)

    def _forget(self, pair: _Pair) -> None:
        pair.close()
        with self._lock:
            self._pairs.discard(pair)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            if self._blocked:
                self.stats.refused += 1
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self.stats.upstream_failed += 1
                with contextlib.suppress(OSError):
                    client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream)
            with self._lock:
                if self._blocked:  # cut while we were connecting
                    pair.close()
                    self.stats.refused += 1
                    continue
                self._pairs.add(pair)
                self.stats.accepted += 1
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(pair, src, dst, up), name=f"{self.name}-pump",
                                 daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while not pair.closed.is_set():
                data = src.recv(_CHUNK)
                if not data:
                    break
                if pair.blackholed:
                    self.stats.dropped_bytes += len(data)
                    continue
                if self.recording is not None:
                    with self._lock:
                        self.recording.append((up, data))
                dst.sendall(data)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
        except OSError:
            pass
        finally:
            self._forget(pair)


# --- a fleet of proxies in their own process ------------------------------------------------------


class ProxyFleet:
    """Named proxies to one target, served by a child process (``python -m testkit.tcpproxy``)
    so that their memory, threads and open files can be watched apart from the test's own.
    Commands go over the child's stdin, one line each, and are answered with one line."""

    def __init__(self, target_host: str, target_port: int, names: list[str], *, log: str | None = None) -> None:
        self._lock = threading.Lock()
        err = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testkit.tcpproxy", f"{target_host}:{target_port}", *names],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1,
        )
        if log:
            err.close()  # type: ignore[union-attr]
        self.ports: dict[str, int] = {}
        for _ in names:
            line = self._readline()
            _, name, port = line.split()
            self.ports[name] = int(port)

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"proxy process exited ({self.proc.poll()})")
        return line.strip()

    def _ask(self, command: str) -> str:
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return self._readline()

    def cut(self, name: str, *, blackhole: bool = False) -> None:
        self._ask(f"{'blackhole' if blackhole else 'cut'} {name}")

    def heal(self, name: str) -> None:
        self._ask(f"heal {name}")

    def stats(self) -> dict[str, dict[str, int]]:
        doc: dict[str, dict[str, int]] = json.loads(self._ask("stats"))
        return doc

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc.poll() is None else None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, OSError):
                self._ask("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _serve(argv: list[str]) -> int:
    host, _, port = argv[0].rpartition(":")
    proxies = {name: TcpProxy(host, int(port), name=name).start() for name in argv[1:]}
    for name, p in proxies.items():
        print(f"ready {name} {p.port}", flush=True)
    for line in sys.stdin:
        cmd, _, name = line.strip().partition(" ")
        if cmd == "quit":
            break
        if cmd == "stats":
            print(json.dumps({n: dataclasses.asdict(p.stats) | {"connections": p.connections}
                              for n, p in proxies.items()}), flush=True)
            continue
        target = proxies.get(name)
        if target is None:
            print(f"error unknown proxy {name!r}", flush=True)
        elif cmd == "cut":
            target.cut()
            print("ok", flush=True)
        elif cmd == "blackhole":
            target.cut(blackhole=True)
            print("ok", flush=True)
        elif cmd == "heal":
            target.heal()
            print("ok", flush=True)
        else:
            print(f"error unknown command {cmd!r}", flush=True)
    for proxy in proxies.values():
        proxy.stop()
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
