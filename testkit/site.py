"""A complete site on disk for tests, benchmarks and the demo: the config file, a
generated credential key, MQTT credentials, and simulated readers (FIFOs).

Pins are gpiozero mock pins (``GPIOZERO_PIN_FACTORY=mock``), so a whole site runs
without hardware, in this process or in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wire.keys import new_key, public_key_b64, write_key_file

from .util import log_tail, stop_process, wait_for


class Endpoint(Protocol):
    """Where a site reaches the broker: a ``Mosquitto`` or a ``TcpProxy`` in front of one."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


def default_layout() -> dict[str, Any]:
    """One room, an entrance and a room door, a simulated reader at each."""
    return {
        "rooms": [{"id": "coworking", "name": "Coworking", "capacity": 8}],
        "doors": [
            {"id": "eingang", "lock_pin": 17, "contact_pin": 27, "exit_pin": 22, "unlock_seconds": 2},
            {"id": "coworking", "room": "coworking", "lock_pin": 5, "contact_pin": 6, "unlock_seconds": 2},
        ],
        "readers": [
            {"id": "eingang-sim", "type": "sim", "door": "eingang"},
            {"id": "coworking-sim", "type": "sim", "door": "coworking"},
        ],
    }


@dataclass
class SiteFiles:
    site: str
    dir: Path
    config_path: Path
    cred_key: bytes
    layout: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def sim_path(self, reader: str) -> Path:
        return self.data_dir / f"sim-{reader}"

    def badge(self, reader: str, credential: str, timeout: float = 10.0) -> None:
        """Present ``credential`` at a simulated reader (its FIFO must exist: agent running)."""
        path = self.sim_path(reader)
        wait_for(path.exists, timeout, what=f"reader FIFO {path}")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, credential.encode() + b"\n")
        finally:
            os.close(fd)

    # --- the agent as a subprocess ----------------------------------------------------------

    def start(self, *, log_level: str = "info", env: dict[str, str] | None = None,
              doors: bool = False) -> subprocess.Popen[bytes]:
        """Run the agent (``torwart-edge run`` on mock pins); with ``doors`` as
        ``testkit.simsite``, whose doors ``act`` moves."""
        e = dict(os.environ)
        e.setdefault("GPIOZERO_PIN_FACTORY", "mock")
        e.update(env or {})
        log = (self.dir / "agent.log").open("ab")
        cmd = (["-m", "testkit.simsite", "--control", str(self.control_path)] if doors else ["-m", "edge", "run"])
        self.proc = subprocess.Popen(
            [sys.executable, *cmd, "--config", str(self.config_path), "--log-level", log_level],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=e,
        )
        log.close()
        return self.proc

    @property
    def control_path(self) -> Path:
        """The control FIFO of a site started with ``doors`` (testkit.simsite)."""
        return self.dir / "control"

    def act(self, line: str) -> None:
        """``open DOOR``, ``close DOOR`` or ``exit DOOR`` at a site started with ``doors``."""
        from .demo_procs import fifo_write

        fifo_write(self.control_path, line)

    def cache_version(self) -> int | None:
        """The version of the cache the site holds (None: none yet), read as a tool would."""
        from edge.cache import CacheStore

        path = self.data_dir / "cache.db"
        if not path.exists():
            return None
        with CacheStore(path, read_only=True) as c:
            return c.version

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        return None if self.proc is None else stop_process(self.proc, timeout)

    def log_tail(self, n: int = 40) -> str:
        return log_tail(self.dir / "agent.log", n)


def write_site(
    dir: Path,
    site: str,
    broker: Endpoint,
    hub_key: Ed25519PrivateKey,
    *,
    layout: dict[str, Any] | None = None,
    password: str | None = None,
    policy: dict[str, Any] | None = None,
    enroll_public_key: str | None = None,
    tls_files: tuple[Path, Path, Path] | None = None,
    cred_key: bytes | None = None,
) -> SiteFiles:
    """Write ``dir/site.toml`` for ``site`` talking to ``broker``, with ``cred_key`` (the
    key the hub holds for this site) or a fresh one."""
    dir.mkdir(parents=True, exist_ok=True)
    key = cred_key if cred_key is not None else new_key()
    write_key_file(dir / "cred.key", key, overwrite=True)
    hub: dict[str, Any] = {
        "host": broker.host, "port": broker.port, "signing_public_key": public_key_b64(hub_key),
        "cred_key_file": "cred.key", "keepalive": 10,
    }
    if password is not None:
        (dir / "mqtt.password").write_text(password + "\n")
        os.chmod(dir / "mqtt.password", 0o600)
        hub.update(username=site, password_file="mqtt.password")  # noqa: S106 (a file name)
    if tls_files is not None:
        ca, cert, key_file = tls_files
        hub.update(tls=True, ca_file=str(ca), cert_file=str(cert), key_file=str(key_file))
    if enroll_public_key is not None:
        hub["enroll_public_key"] = enroll_public_key
    lay = layout or default_layout()
    doc: dict[str, Any] = {
        "site": {"id": site, "name": f"Test site {site}", "data_dir": "data", "timezone": "Europe/Berlin"},
        "policy": {"clock_trust": "system", "resend_seconds": 2, "status_interval_seconds": 5, **(policy or {})},
        "hub": hub,
        **lay,
    }
    path = dir / "site.toml"
    path.write_text(tomli_w.dumps(doc))
    return SiteFiles(site, dir, path, key, lay)

