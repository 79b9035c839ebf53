"""A real PostgreSQL server (Debian's packages) in a temporary directory on a free loopback
port, for the hub store's PostgreSQL tests, like ``testkit.broker`` starts Mosquitto.

PostgreSQL refuses to run as root: as root (CI) the server runs as the ``postgres`` system
user (Debian's package creates it) and owns its directory; otherwise as the current user.
Its Unix socket is in that directory too. ``fsync`` stays on: the tests check durability.

Logins: ``trust`` over the Unix socket (``admin()``: the superuser, to create databases),
``scram-sha-256`` over TCP for the role ``torwart`` with a password generated per server
(``password``; the URLs from ``url`` carry no password, so a test passes it the way the hub
would: a password file, PGPASSWORD, or in the URL).

Fresh databases are cheap: ``template()`` names a database made once per server (e.g. with
the store's schema applied) and ``fresh_db()`` copies it (``CREATE DATABASE ... TEMPLATE``).
``stop()`` (fast shutdown: sessions are cut), ``kill()`` (immediate shutdown: recovery at the
next start, like a crash) and ``start()`` again on the same port and data.

``shared()`` is one server per test process (started on first use, removed at exit);
``store_url(kind)`` gives a hub store URL for tests and the testkit's counties: ``sqlite``
(None: the default SQLite file in the data directory) or ``postgres`` (a fresh database
with the schema on the shared server); without ``kind`` the environment variable
``TORWART_TEST_STORE`` picks (default ``sqlite``), so that ``TORWART_TEST_STORE=postgres``
runs every county of the suite on PostgreSQL.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .util import free_port, log_tail, stop_process, wait_for

ROLE = "torwart"


def pg_bindir() -> Path:
    """The newest installed ``/usr/lib/postgresql/N/bin``; RuntimeError when none is."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup --dev (it installs Debian's postgresql)")
    return found[-1].parent


def _run_as() -> tuple[str | None, int, int]:
    """(user to run the server as or None for ourselves, its uid, its gid)."""
    if os.geteuid() != 0:
        return None, os.geteuid(), os.getegid()
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no 'postgres' user to run PostgreSQL as "
                           "(Debian's postgresql package creates it)") from None
    return "postgres", pw.pw_uid, pw.pw_gid


@dataclass
class Postgres:
    """One PostgreSQL server; ``with Postgres() as pg:`` starts it and removes it after."""

    host: str = "127.0.0.1"
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="torwart-pg-")))
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    _templates: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _n: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port(self.host)
        self.bindir = pg_bindir()
        self.user, self._uid, self._gid = _run_as()
        os.chown(self.workdir, self._uid, self._gid)
        self.workdir.chmod(0o700)
        self.data = self.workdir / "data"
        self.socket_dir = self.workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    def _cmd(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(args, user=self.user, cwd=self.workdir, capture_output=True, check=False, **kw)

    def _init(self) -> None:
        pwfile = self.workdir / "pw"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, self._uid, self._gid)
        pwfile.chmod(0o600)
        r = self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--no-sync",
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        pwfile.unlink()
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}):\n{r.stderr.decode(errors='replace')}")
        # initdb --no-sync (fast) leaves the files to the page cache; the server itself runs with fsync.
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.socket_dir}'\nfsync = on\nsynchronous_commit = on\n"
                    "max_connections = 200\nshared_buffers = 32MB\nlogging_collector = off\n")

    def start(self, timeout: float = 30.0) -> Postgres:
        if self.running:
            return self
        if not (self.data / "PG_VERSION").exists():
            self._init()
            first = True
        else:
            first = False
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(self.bindir / "postgres"), "-D", str(self.data)], user=self.user,
                                     cwd=self.workdir, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self._cmd(str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir),
                             "-p", str(self.port)).returncode == 0

        wait_for(ready, timeout, interval=0.05, what=f"postgres on port {self.port}")
        if first:
            self.admin(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD %s", (self.password,))
        return self

    def admin(self, sql: str, params: tuple[Any, ...] = (), dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser over the Unix socket (autocommit); its rows."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
                             autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cur = conn.execute(sql.encode(), params) if params else conn.execute(sql.encode())
            return cur.fetchall() if cur.description else []

    def url(self, dbname: str, *, password: bool = False) -> str:
        """``postgresql://torwart@host:port/dbname`` (with the password when asked)."""
        who = f"{ROLE}:{self.password}" if password else ROLE
        return f"postgresql://{who}@{self.host}:{self.port}/{dbname}"

    def create_db(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` owned by ``torwart`` (a copy of ``template`` when given)."""
        tpl = f" TEMPLATE {template}" if template else ""
        self.admin(f'CREATE DATABASE "{name}" OWNER {ROLE}{tpl}')
        return name

    def template(self, name: str, prepare: Callable[[str], None]) -> str:
        """A template database made once per server: created, ``prepare(url with password)``
        run on it (e.g. the store's migrations), then marked a template."""
        with self._lock:
            if name not in self._templates:
                self.create_db(name)
                prepare(self.url(name, password=True))
                self.admin(f'ALTER DATABASE "{name}" WITH is_template = true ALLOW_CONNECTIONS false')
                self._templates[name] = name
            return self._templates[name]

    def fresh_db(self, template: str | None = None, prefix: str = "t") -> str:
        """A new database (a copy of ``template``); its name."""
        return self.create_db(f"{prefix}_{os.getpid()}_{next(self._n)}", template)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open sessions are cut, a checkpoint is written."""
        self._shut_down(signal.SIGINT, timeout)

    def kill(self, timeout: float = 30.0) -> None:
        """Immediate shutdown (SIGQUIT), as after a crash: the next start recovers from the WAL."""
        self._shut_down(signal.SIGQUIT, timeout)

    def _shut_down(self, sig: signal.Signals, timeout: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_process(self.proc, 1.0)
        self.proc = None

    def restart(self, *, hard: bool = False) -> Postgres:
        self.kill() if hard else self.stop()
        return self.start()

    def log_tail(self, n: int = 30) -> str:
        return log_tail(self.log_path, n)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        try:
            return self.start()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc: object) -> None:
        self.remove()


#: Which store the testkit's counties use when a test does not say: ``sqlite`` or ``postgres``.
TEST_STORE_ENV = "TORWART_TEST_STORE"
STORE_KINDS = ("sqlite", "postgres")
_shared: list[Postgres] = []
_shared_lock = threading.Lock()


def shared() -> Postgres:
    """This process's PostgreSQL for tests: started on first use, removed when the process exits."""
    with _shared_lock:
        if not _shared or not _shared[-1].running:
            pg = Postgres()
            pg.start()
            atexit.register(pg.remove)
            _shared.append(pg)
        return _shared[-1]


def _migrate(url: str) -> None:
    from hub.store import open_store

    open_store(url).close()


def fresh_store_url(pg: Postgres | None = None) -> str:
    """A new database with the hub store's schema (copied from a template made once per
    server) on ``pg`` (default: ``shared()``); its URL with the password."""
    pg = pg or shared()
    return pg.url(pg.fresh_db(pg.template("store_template", _migrate)), password=True)


def store_url(kind: str | None = None) -> str | None:
    """The store URL for a test hub of ``kind`` (None: ``$TORWART_TEST_STORE``, default
    sqlite): None for SQLite (the default file in the data directory), a fresh database
    for postgres; a ``postgresql://`` URL is taken as it is. ValueError for another kind."""
    if kind is not None and kind.startswith("postgresql://"):
        return kind
    kind = kind or os.environ.get(TEST_STORE_ENV) or "sqlite"
    if kind not in STORE_KINDS:
        raise ValueError(f"{TEST_STORE_ENV}: {kind!r} is not a store kind ({', '.join(STORE_KINDS)})")
    return None if kind == "sqlite" else fresh_store_url()
