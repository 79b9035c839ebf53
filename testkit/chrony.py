"""Real chronyd instances for tests, on loopback, that never touch the system clock.

Every instance runs ``chronyd -x -d -f CONF``: ``-x`` keeps it off the system clock (it
still tracks its offset and serves time, corrected by what it has learnt), ``-d`` keeps it
in the foreground. Its command socket, pid file, drift file and NTS dump directory live in
its own directory; it reads nothing of /etc/chrony. Servers listen on free ports of a
loopback address of their own (chrony takes one source per address).

- ``nts_server``: NTS-KE (a test CA's certificate, made here with cryptography) and NTP
  with NTS, serving its own clock at stratum 1;
- ``plain_server``: unauthenticated NTP, optionally ``offset`` seconds wrong (set through
  chronyc ``settime``: with ``-x`` that shifts the time chronyd serves, not the machine's);
- ``client``: whatever ``server`` lines a test gives, plus the policy of the shipped
  firmware_configs/chrony/torwart.conf (``authselectmode require``, ``nocerttimecheck``,
  ...; ``shipped_policy``) unless told otherwise; its ``socket`` is what the verdict
  reader asks.
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .util import free_port, stop_process, wait_for

#: The chrony configuration a site's package installs (/etc/chrony/conf.d/torwart.conf).
SHIPPED_CONF = Path(__file__).resolve().parents[1] / "firmware_configs" / "chrony" / "torwart.conf"


def shipped_policy(path: Path = SHIPPED_CONF) -> list[str]:
    """The shipped file's directives except its sources and file locations (a test brings
    its own servers and keeps every file in its directory)."""
    own = {"server", "pool", "peer", "ntsdumpdir", "driftfile", "ntstrustedcerts", "logdir", "dumpdir"}
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and line.split()[0] not in own]


def chrony_binaries() -> tuple[str, str] | None:
    """(chronyd, chronyc), or None when chrony is not installed (scripts/setup --dev installs it)."""
    found = [shutil.which(n) or next((p for p in (f"/usr/sbin/{n}", f"/usr/bin/{n}") if os.access(p, os.X_OK)), None)
             for n in ("chronyd", "chronyc")]
    return (found[0], found[1]) if found[0] and found[1] else None


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_nts_pki(dir: Path, address: str) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for ``address`` (IP SAN, as chrony checks the name
    it was given): (ca.crt, server.crt, server.key). Generated per test, never stored."""
    dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Torwart NTS test CA")).issuer_name(_name("Torwart NTS test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (dir / "ca.crt", dir / "server.crt", dir / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


@dataclass
class Chronyd:
    """One chronyd process (see the module docstring). ``directives`` are its own lines."""

    dir: Path
    directives: list[str]
    user: str | None = None
    """Drop to this user after start (root only); None: stay as whoever runs the test."""
    umask: int = 0o022
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def socket(self) -> str:
        return str(self.run_dir / "chronyd.sock")

    @property
    def log_path(self) -> Path:
        return self.dir / "chronyd.log"

    def _config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        # chronyd refuses a socket directory that is not its user's or that others can enter;
        # a daemon that drops to ``user`` gets the layout of Debian's unit with the Torwart
        # drop-in (firmware_configs/chrony/): /run/chrony user:group 0770.
        if self.user:
            pw = pwd.getpwnam(self.user)
            for d in (self.dir, self.run_dir):
                os.chown(d, pw.pw_uid, pw.pw_gid)
            os.chmod(self.run_dir, 0o770)  # noqa: S103 (group _chrony: the agent's way in)
        else:
            os.chmod(self.run_dir, 0o700)
        conf = self.dir / "chrony.conf"
        conf.write_text("\n".join([
            f"bindcmdaddress {self.socket}", "cmdport 0",
            f"pidfile {self.run_dir / 'chronyd.pid'}", f"driftfile {self.dir / 'drift'}",
            f"ntsdumpdir {self.dir / 'nts'}",
            *self.directives, ""]))
        return conf

    def start(self, timeout: float = 10.0) -> Chronyd:
        bins = chrony_binaries()
        if bins is None:
            raise RuntimeError("chrony is not installed: run scripts/setup --dev (it installs Debian's chrony)")
        conf = self._config()
        who = ["-u", self.user] if self.user else (["-u", "root"] if os.geteuid() == 0 else ["-U"])
        # The umask decides the command socket's mode (chronyd sets none), as UMask= in its unit does.
        argv = ["/bin/sh", "-c", f'umask {self.umask:03o} && exec "$0" "$@"',
                bins[0], "-x", "-d", "-f", str(conf), *who]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(self.socket) or self.proc is None or self.proc.poll() is not None,
                     timeout, what=f"chronyd's command socket in {self.dir}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"chronyd exited with {self.proc.returncode}:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        return self

    def chronyc(self, *command: str, timeout: float = 5.0) -> str:
        """Run one chronyc command against this instance (CSV, no name lookups, dates in UTC)."""
        bins = chrony_binaries()
        assert bins is not None
        done = subprocess.run([bins[1], "-c", "-n", "-h", self.socket, *command], capture_output=True,
                              timeout=timeout, check=False, env={**os.environ, "TZ": "UTC"})
        if done.returncode != 0:
            raise RuntimeError(f"chronyc {' '.join(command)}: {done.stderr.decode()}{done.stdout.decode()}")
        return done.stdout.decode()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5.0)
            self.proc = None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> Chronyd:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class NtpServer:
    """A running server: where clients find it."""

    daemon: Chronyd
    address: str
    port: int
    ntsport: int | None = None
    ca_file: Path | None = None

    def server_line(self, *, nts: bool | None = None) -> str:
        """The client's ``server`` directive (fast polling, so that tests take seconds)."""
        use_nts = self.ntsport is not None if nts is None else nts
        extra = f" nts ntsport {self.ntsport}" if use_nts else ""
        return f"server {self.address} port {self.port}{extra} iburst minpoll -2 maxpoll 0"


def nts_server(dir: Path, address: str = "127.0.0.1") -> NtpServer:
    """Start an NTS server on ``address`` (free NTP and NTS-KE ports); stop ``.daemon``."""
    ca, cert, key = make_nts_pki(dir / "pki", address)
    port, ntsport = free_port(address), free_port(address)
    d = Chronyd(dir, ["local stratum 1", "allow 127.0.0.0/8", f"bindaddress {address}", f"port {port}",
                      f"ntsport {ntsport}", f"ntsserverkey {key}", f"ntsservercert {cert}", "ntsprocesses 0"])
    d.start()
    return NtpServer(d, address, port, ntsport, ca)


def plain_server(dir: Path, address: str = "127.0.0.2", offset: float = 0.0) -> NtpServer:
    """Start an unauthenticated NTP server on ``address`` serving its clock ``offset`` seconds
    wrong (the machine's clock is untouched)."""
    port = free_port(address)
    d = Chronyd(dir, ["local stratum 1", "manual", "allow 127.0.0.0/8", f"bindaddress {address}", f"port {port}"])
    d.start()
    if offset:
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
        d.chronyc("settime", when.strftime("%b %d, %Y %H:%M:%S"))
    return NtpServer(d, address, port)


def client(dir: Path, servers: list[str], *, shipped: bool = True, trusted_ca: Path | None = None,
           user: str | None = None, umask: int = 0o022) -> Chronyd:
    """Start a client of ``servers`` (``NtpServer.server_line()``s) under the shipped policy
    (``shipped=False``: chrony's defaults, as a Pi without the package has), trusting
    ``trusted_ca`` for NTS (copied into its directory, so that a daemon running as ``user``
    reads it)."""
    lines = [*servers, "port 0"]
    if trusted_ca is not None:
        dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trusted_ca, dir / "nts-ca.crt")
        lines.append(f"ntstrustedcerts {dir / 'nts-ca.crt'}")
    if shipped:
        lines.extend(shipped_policy())
    return Chronyd(dir, lines, user=user, umask=umask).start()


def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
