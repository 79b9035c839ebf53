"""A real Mosquitto broker on a free loopback port, from a generated configuration.

It can be stopped, killed and restarted on the same port with its persistence, which
is what the fault-injection tests need.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hub.provision import pki
from hub.provision.mosquitto import acl_text, password_line

from .util import free_port, log_tail, port_open, stop_process, wait_for


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if path is None:
        raise RuntimeError("mosquitto is not installed: run scripts/setup (it installs Debian's mosquitto)")
    return path


@dataclass
class TlsFiles:
    """Everything a TLS test needs: the CA and the broker's server pair, written to ``dir``."""

    dir: Path
    ca: pki.KeyPair
    ca_file: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def make(cls, dir: Path) -> TlsFiles:
        dir.mkdir(parents=True, exist_ok=True)
        ca = pki.make_ca("Torwart test CA")
        server = pki.issue(ca, "localhost", server=True, hosts=("127.0.0.1", "localhost"))
        (dir / "ca.crt").write_bytes(ca.cert_pem())
        server.write(dir / "server.crt", dir / "server.key")
        return cls(dir, ca, dir / "ca.crt", dir / "server.crt", dir / "server.key")

    def client(self, cn: str, ca: pki.KeyPair | None = None) -> tuple[Path, Path]:
        """Issue a client certificate with CN ``cn`` (from another CA when ``ca`` is given)."""
        pair = pki.issue(ca or self.ca, cn)
        cert, key = self.dir / f"{cn}.crt", self.dir / f"{cn}.key"
        pair.write(cert, key)
        return cert, key


@dataclass
class Mosquitto:
    """One Mosquitto process. ``users`` switches on password auth and the PROTOCOL.md ACL.

    As on the shipped broker (firmware_configs/mosquitto/torwart.conf), no login can take
    another's client id: on ``port`` (every login: sites and hub, by password or client
    certificate) Mosquitto replaces each client id with the login (``use_username_as_clientid``).
    With hub passwords (``users`` naming a hub user, or ``hub_password_file``) there is a
    second listener, ``hub_port``, where only the hub's logins are accepted and client ids
    are free: the hub's processes and its command line connect there. Without one,
    ``hub_port`` is ``port``. The anonymous broker (no ``users``, ``tls`` or files) has no
    logins, hence nothing to tie client ids to: it is one plain listener."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    users: dict[str, str] | None = None
    hub_users: tuple[str, ...] = ("hub",)
    tls: TlsFiles | None = None
    #: Use these files (e.g. written by hub.provision) instead of generating them from ``users``.
    password_file: Path | None = None
    acl_file: Path | None = None
    #: The hub listener's password file (the hub's logins only), e.g. provision's passwd-hub.
    hub_password_file: Path | None = None
    #: With ``tls``: the CRL the sites' listener checks client certificates against (``crlfile``).
    crl_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    _hub_port: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        if self.hub_password_file is not None or (self.users is not None and set(self.users) & set(self.hub_users)):
            self._hub_port = free_port(self.host)
        (self.workdir / "data").mkdir(exist_ok=True)

    @property
    def hub_port(self) -> int:
        """Where the hub connects: its own listener when there is one, else ``port``."""
        return self._hub_port or self.port

    @property
    def secured(self) -> bool:
        return self.users is not None or self.tls is not None or self.password_file is not None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        lines = [
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # As root Mosquitto would switch to user "mosquitto", which may not read our files.
            lines.append(f"user {pwd.getpwuid(0).pw_name}")
        if not self.secured:
            lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        else:
            lines += ["per_listener_settings true", *self._secured_listeners()]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _secured_listeners(self) -> list[str]:
        password_file, acl_file, hub_password_file = self.password_file, self.acl_file, self.hub_password_file
        if self.users is not None and password_file is None and acl_file is None:
            password_file = self.workdir / "passwd"
            password_file.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            password_file.chmod(0o600)
            hub_password_file = self.workdir / "passwd-hub"
            hub_password_file.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()
                                                 if u in self.hub_users))
            hub_password_file.chmod(0o600)
        if acl_file is None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(acl_text(self.hub_users))
        sites = [f"listener {self.port} {self.host}", "allow_anonymous false", f"acl_file {acl_file}",
                 "use_username_as_clientid true"]
        if password_file is not None:
            sites.append(f"password_file {password_file}")
        if self.tls is not None:
            sites += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
                "use_identity_as_username true",
                "tls_version tlsv1.2",
            ]
            if self.crl_file is not None:
                sites.append(f"crlfile {self.crl_file}")
        hub: list[str] = []
        if self._hub_port and hub_password_file is not None:
            hub = [f"listener {self._hub_port} {self.host}", "allow_anonymous false",
                   f"password_file {hub_password_file}", f"acl_file {acl_file}"]
        return sites + hub

    def start(self, timeout: float = 10.0) -> Mosquitto:
        if self.running:
            return self
        conf = self._write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log_tail()}")
            return port_open(self.host, self.port) and port_open(self.host, self.hub_port)

        wait_for(ready, timeout, what=f"mosquitto on port {self.port}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM): Mosquitto saves its persistence first."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
        self.proc = None

    def kill(self) -> None:
        """Kill without warning (SIGKILL), as a power cut or OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, *, hard: bool = False) -> Mosquitto:
        self.kill() if hard else self.stop()
        return self.start()

    def log_tail(self, n: int = 30) -> str:
        return log_tail(self.log_path, n)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
