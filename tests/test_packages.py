"""The Debian packages (scripts/build-deb, docs/operations.md) and the version they carry.

The slow test builds torwart-edge and torwart-hub for this machine's architecture and
installs them with apt into a clean Debian 12 root made by debootstrap (tests/debroot.py):
the user, the directories, the units (``systemd-analyze verify``), ``--version``, the
edge's ``check`` on the shipped example config with keys made here, the hub's ``init`` and
``site add`` and the edge's ``check`` on the bundle that made; then remove (data and keys
stay) and purge (they go, and with the last Torwart package the user). A second slow test
runs the arm64 packages (built here too) in an arm64 Debian 12 through qemu-user. Both need
root (chroot) and Debian's and PyPI's servers; tests/debroot.py caches the roots for a day.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import io
import itertools
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hub.provision import pki
from testkit.broker import Mosquitto
from testkit.postgres import Postgres
from wire import messages as m
from wire import software_version
from wire.keys import new_key, public_key_b64, signing_key_from_seed, write_key_file

from . import debroot
from .edge.hubside import agent_in_thread, site_with_hub

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@functools.cache
def build_deb_module() -> ModuleType:
    """scripts/build_deb.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("build_deb", ROOT / "scripts" / "build_deb.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look themselves up there
    spec.loader.exec_module(mod)
    return mod


def entry_point(command: str) -> Any:
    """The function pyproject names for ``command`` (wherever the CLI module lives)."""
    module, func = PYPROJECT["project"]["scripts"][command].split(":")
    return getattr(importlib.import_module(module), func)


# --- the version, in this checkout ------------------------------------------------------------


@pytest.mark.parametrize("command", ["torwart-edge", "torwart-hub"])
def test_version_flag_prints_the_installed_package_version(command: str) -> None:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exc:
        rc = entry_point(command)(["--version"])
        raise SystemExit(rc)
    assert exc.value.code in (0, None)
    assert out.getvalue().strip() == f"{command} {importlib.metadata.version('torwart')}"


def test_the_sites_status_and_start_event_carry_that_version(tmp_path: Path, broker: Mosquitto,
                                                               mock_pins: Any) -> None:
    with site_with_hub(tmp_path / "minheim", broker) as (site, hub), agent_in_thread(site):
        status = hub.wait_online()
        started = hub.wait_event(lambda e: e.type == "system.started")
    assert status.software == importlib.metadata.version("torwart") == software_version()
    assert isinstance(started, m.SystemStarted) and started.software == status.software


# --- scripts/build-deb without building -----------------------------------------------------


def test_debian_versions_sort_as_the_pep440_versions_do() -> None:
    bd = build_deb_module()
    ascending = ["1.0.dev1", "1.0a1.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1.0.1", "1.10"]
    debian = [bd.debian_version(v) for v in ascending]
    assert debian[:3] == ["1.0~~dev1", "1.0~a1~dev1", "1.0~a1"] and debian[6] == "1.0+post1"
    for lower, higher in itertools.pairwise(debian):
        assert subprocess.run(["dpkg", "--compare-versions", lower, "lt", higher], check=False).returncode == 0, \
            (lower, higher)
    assert bd.debian_version(VERSION)
    with pytest.raises(bd.BuildError, match="not a normalised PEP 440 version"):
        bd.debian_version("1.0-beta")


@pytest.mark.parametrize("argv, message", [
    (["--arch", "armhf"], "invalid choice: 'armhf'"),
    (["--role", "broker"], "invalid choice: 'broker'"),
])
def test_build_deb_refuses_bad_arguments_and_writes_nothing(tmp_path: Path, argv: list[str], message: str) -> None:
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_deb.py"), *argv, "--out", str(out)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and message in res.stderr
    assert not out.exists()


def test_the_packaged_units_run_the_packaged_commands_and_keep_their_state_directories() -> None:
    bd = build_deb_module()
    for role, state, mode in (("edge", "/var/lib/torwart", "0700"), ("hub", "/var/lib/torwart-hub", "0710")):
        unit, state_dir, state_mode = bd.unit_text(role)
        assert f"\nExecStart=/usr/bin/torwart-{role} run --config /etc/torwart/" in unit
        assert "/opt/torwart" not in unit and (state_dir, state_mode) == (state, mode)


# --- the packages on a clean Debian 12 --------------------------------------------------------


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: chroot into a debootstrapped Debian 12")


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Both packages for this machine's architecture, and for arm64 (the Pi) too."""
    need_root()
    if host_arch() not in ("amd64", "arm64"):
        pytest.skip(f"no packages for {host_arch()}")
    out = tmp_path_factory.mktemp("dist")
    arches = sorted({host_arch(), "arm64"})
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_deb.py"), "--out", str(out), "--xz-level=1",
                          *(f"--arch={a}" for a in arches)], capture_output=True, text=True, check=False, timeout=1800)
    assert res.returncode == 0, res.stderr
    print(f"build-deb {' '.join(arches)}: {time.monotonic() - t0:.0f} s\n{res.stdout}")
    deb_version = build_deb_module().debian_version(VERSION)
    found = {(role, a): out / f"torwart-{role}_{deb_version}_{a}.deb" for role in ("edge", "hub") for a in arches}
    assert all(p.is_file() for p in found.values()), sorted(out.iterdir())
    return found


@pytest.fixture
def debian(tmp_path: Path) -> Iterator[debroot.DebianRoot]:
    need_root()
    t0 = time.monotonic()
    try:
        root = debroot.debian_root(tmp_path / "root", host_arch())
    except debroot.Unavailable as exc:
        pytest.skip(str(exc))
    print(f"Debian root: {time.monotonic() - t0:.0f} s")
    yield root
    debroot.keep_downloads(root, host_arch())
    shutil.rmtree(root.path)  # half a gigabyte


def mode_owner(root: debroot.DebianRoot, path: str) -> tuple[str, tuple[int, int]]:
    st = root.file(path).stat()
    return f"{stat.S_IMODE(st.st_mode):04o}", (st.st_uid, st.st_gid)


def write_example_site(root: debroot.DebianRoot, torwart: tuple[int, int]) -> str:
    """firmware_configs/sites/example.toml as /etc/torwart/site.toml, with its key files made here."""
    etc = root.file("/etc/torwart")
    text = (ROOT / "firmware_configs" / "sites" / "example.toml").read_text()
    signing_public = public_key_b64(signing_key_from_seed(new_key()))
    text = text.replace('"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="', f'"{signing_public}"')
    (etc / "site.toml").write_text(text)
    ca = pki.make_ca()
    (etc / "ca.crt").write_bytes(ca.cert_pem())
    pki.issue(ca, "example").write(etc / "site.crt", etc / "site.key")
    write_key_file(etc / "cred.key", new_key())
    for name in ("site.toml", "ca.crt", "site.crt", "site.key", "cred.key"):
        os.chown(etc / name, *torwart)
    return "/etc/torwart/site.toml"


HUB_TOML = """\
[hub]
data_dir = "/var/lib/torwart-hub"
signing_key_file = "/var/lib/torwart-hub/keys/signing.key"

[mqtt]
host = "127.0.0.1"
username = "hub"
password_file = "/var/lib/torwart-hub/secrets/hub-mqtt.password"

[booking]
adapter = "ics"
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_both_packages_install_work_and_remove_and_purge_cleanly_on_debian_12(
        debs: dict[tuple[str, str], Path], debian: debroot.DebianRoot, postgres_server: Postgres) -> None:
    root = debian
    deb = {role: debs[role, host_arch()] for role in ("edge", "hub")}
    for path in deb.values():
        (root.file("/tmp") / path.name).write_bytes(path.read_bytes())

    # --- torwart-edge: pulls chrony, makes the user and its directories, leaves the unit disabled
    root.apt("install", f"/tmp/{deb['edge'].name}")
    assert root.status("torwart-edge") == "installed" and root.status("chrony") == "installed"
    torwart = root.ids("torwart")
    assert torwart is not None and torwart[0] < 1000
    passwd = next(line for line in root.file("/etc/passwd").read_text().splitlines() if line.startswith("torwart:"))
    assert passwd.endswith(":/nonexistent:/usr/sbin/nologin")
    assert "torwart" in (root.group_members("gpio") or []) and "torwart" in (root.group_members("dialout") or [])
    # authenticated time: our chrony config, the socket drop-in, and the agent in _chrony
    assert "torwart" in (root.group_members("_chrony") or [])
    assert "authselectmode require" in root.file("/etc/chrony/conf.d/torwart.conf").read_text()
    assert "RuntimeDirectoryMode=0770" in root.file(
        "/usr/lib/systemd/system/chrony.service.d/torwart.conf").read_text()
    assert "/etc/chrony/conf.d/torwart.conf" in root.file("/var/lib/dpkg/info/torwart-edge.conffiles").read_text()
    assert mode_owner(root, "/etc/torwart") == ("0750", torwart)
    assert mode_owner(root, "/var/lib/torwart") == ("0700", torwart)
    assert root.run("systemd-analyze", "verify", "torwart-edge.service").stdout == ""
    assert root.run("systemctl", "is-enabled", "torwart-edge.service", check=False).stdout.strip() == "disabled"
    assert root.run("torwart-edge", "--version").stdout.strip() == f"torwart-edge {VERSION}"
    assert root.run("/usr/lib/torwart-edge/bin/python3", "-c", "import importlib.metadata as m; "
                    "print(m.version('torwart'))").stdout.strip() == VERSION

    config = write_example_site(root, torwart)
    res = root.run("torwart-edge", "check", "--config", config, user="torwart")
    assert "site example (Dorfgemeinschaftshaus Beispiel)" in res.stdout and res.stdout.rstrip().endswith("config OK")
    res = root.run("torwart-edge", "check", "--config", "/etc/torwart/missing.toml", user="torwart", check=False)
    assert res.returncode == 2 and "missing.toml" in res.stderr
    (root.file("/var/lib/torwart") / "outbox.db").write_text("the site's events")
    root.apt("install", "--reinstall", f"/tmp/{deb['edge'].name}")  # an upgrade's path through the scripts
    assert root.run("torwart-edge", "check", "--config", config, user="torwart").stdout.rstrip().endswith("config OK")

    # --- torwart-hub beside it: recommends Mosquitto; init and site add as the user torwart
    root.apt("install", f"/tmp/{deb['hub'].name}")
    assert root.status("torwart-hub") == "installed" and root.status("mosquitto") == "installed"
    assert root.ids("torwart") == torwart
    assert mode_owner(root, "/var/lib/torwart-hub") == ("0710", torwart)
    assert root.run("systemd-analyze", "verify", "torwart-hub.service").stdout == ""
    assert root.run("torwart-hub", "--version").stdout.strip() == f"torwart-hub {VERSION}"
    root.file("/etc/torwart/hub.toml").write_text(HUB_TOML)
    os.chown(root.file("/etc/torwart/hub.toml"), *torwart)
    root.run("torwart-hub", "init", "--config", "/etc/torwart/hub.toml", user="torwart")
    root.run("torwart-hub", "site", "add", "minheim", "--bundle", "--name", "Minheim", "--broker-host", "hub.example",
             "--tls", "--config", "/etc/torwart/hub.toml", user="torwart")
    res = root.run("torwart-edge", "check", "--config", "/var/lib/torwart-hub/provision/minheim/site.toml",
                   user="torwart")
    assert "site minheim (Minheim)" in res.stdout and "auth=client certificate" in res.stdout
    assert mode_owner(root, "/var/lib/torwart-hub/keys/signing.key") == ("0600", torwart)
    packaged_hub_on_postgresql(root, torwart, postgres_server)

    # an upgrade (here: the same version again) keeps the admin's enabling and the data
    root.run("systemctl", "enable", "torwart-hub.service")
    root.apt("install", "--reinstall", f"/tmp/{deb['hub'].name}")
    assert root.run("systemctl", "is-enabled", "torwart-hub.service").stdout.strip() == "enabled"
    assert root.file("/var/lib/torwart-hub/hub.sqlite3").is_file()

    # --- remove keeps data and keys; the commands and the unit go
    root.apt("remove", "torwart-edge")
    assert root.status("torwart-edge") == "config-files"
    assert not root.file("/usr/bin/torwart-edge").exists() and not root.file("/usr/lib/torwart-edge").exists()
    assert not root.file("/lib/systemd/system/torwart-edge.service").exists()
    assert (root.file("/var/lib/torwart") / "outbox.db").read_text() == "the site's events"
    assert root.file("/etc/torwart/cred.key").is_file() and root.file("/etc/torwart/site.key").is_file()

    # --- purging the edge while the hub stays: the edge's data goes, /etc/torwart and the user stay
    root.apt("purge", "torwart-edge")
    assert root.status("torwart-edge") == "not-installed"
    assert not root.file("/var/lib/torwart").exists()
    assert root.file("/etc/torwart/hub.toml").is_file() and root.ids("torwart") == torwart
    root.run("torwart-hub", "--version", user="torwart")

    root.apt("remove", "torwart-hub")
    assert root.file("/var/lib/torwart-hub/hub.sqlite3").is_file() and root.file("/etc/torwart/hub.toml").is_file()
    assert root.file("/etc/systemd/system/multi-user.target.wants/torwart-hub.service").is_symlink()

    # --- purging the last one: data, keys, unit state, user and group go; Mosquitto stays
    root.apt("purge", "torwart-hub")
    assert root.status("torwart-hub") == "not-installed"
    for gone in ("/var/lib/torwart-hub", "/etc/torwart", "/usr/lib/torwart-hub",
                 "/etc/systemd/system/multi-user.target.wants/torwart-hub.service"):
        assert not root.file(gone).exists() and not root.file(gone).is_symlink(), gone
    assert root.ids("torwart") is None and root.run("getent", "group", "torwart", check=False).returncode == 2
    assert root.status("mosquitto") == "installed"


def packaged_hub_on_postgresql(root: debroot.DebianRoot, torwart: tuple[int, int], pg: Postgres) -> None:
    """The hub package carries psycopg with its own libpq (the edge's does not): its
    ``init`` sets up a store in a real PostgreSQL, and ``sites`` reads it back."""
    data = "/var/lib/torwart-hub-pg"
    root.file(data).mkdir(mode=0o700)
    os.chown(root.file(data), *torwart)
    (root.file("/etc/torwart") / "pg.password").write_text(pg.password + "\n")
    toml = HUB_TOML.replace("/var/lib/torwart-hub", data).replace(
        "[hub]\n", f'[hub]\ndatabase = "{pg.url(pg.fresh_db(prefix="deb"))}"\n'
        'database_password_file = "/etc/torwart/pg.password"\n')
    root.file("/etc/torwart/hub-pg.toml").write_text(toml)
    for name in ("hub-pg.toml", "pg.password"):
        os.chown(root.file("/etc/torwart") / name, *torwart)
        (root.file("/etc/torwart") / name).chmod(0o600)
    root.run("torwart-hub", "init", "--config", "/etc/torwart/hub-pg.toml", user="torwart")
    root.run("torwart-hub", "site", "add", "wintrich", "--bundle", "--name", "Wintrich", "--broker-host",
             "hub.example", "--tls", "--config", "/etc/torwart/hub-pg.toml", user="torwart")
    assert not root.file(f"{data}/hub.sqlite3").exists()
    assert "wintrich" in root.run("torwart-hub", "sites", "--config", "/etc/torwart/hub-pg.toml",
                                  user="torwart").stdout
    assert "postgresql" in pg.admin("SELECT version()")[0][0].lower()
    packages = {role: root.file(f"/usr/share/doc/torwart-{role}/python-packages.txt").read_text().split()
                for role in ("edge", "hub")}
    assert "psycopg" in packages["hub"] and "psycopg" not in packages["edge"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_arm64_packages_run_on_an_arm64_debian_12_under_emulation(
        debs: dict[tuple[str, str], Path], tmp_path: Path) -> None:
    """What can be shown of the Pi's packages on an amd64 machine: unpacked into an arm64
    Debian 12 (no maintainer scripts: those ran in the test above for this architecture),
    their commands run on Debian's arm64 python3 through qemu-user and load every compiled
    module (msgspec, cryptography, libosdp) built for aarch64."""
    if host_arch() == "arm64":
        pytest.skip("this machine is arm64: the test above installs the arm64 packages")
    try:
        root = debroot.foreign_root(tmp_path / "arm64", "arm64")
    except debroot.Unavailable as exc:
        pytest.skip(str(exc))
    try:
        run_arm64_packages(root, debs)
    finally:
        shutil.rmtree(root.path)


def run_arm64_packages(root: debroot.DebianRoot, debs: dict[tuple[str, str], Path]) -> None:
    for role in ("edge", "hub"):
        subprocess.run(["dpkg-deb", "-x", str(debs[role, "arm64"]), str(root.path)], check=True)
    edge, hub = "/usr/lib/torwart-edge", "/usr/lib/torwart-hub"
    assert root.venv_run(edge, "torwart-edge", "--version").stdout.strip() == f"torwart-edge {VERSION}"
    assert root.venv_run(hub, "torwart-hub", "--version").stdout.strip() == f"torwart-hub {VERSION}"
    res = root.venv_run(edge, "python3", "-c", "import platform, msgspec, osdp, cryptography.hazmat.bindings._rust; "
                        "print(platform.machine())")
    assert res.stdout.strip() == "aarch64"
    res = root.venv_run(hub, "python3", "-c",
                        "import platform, psycopg; print(platform.machine(), psycopg.pq.__impl__)")
    assert res.stdout.split() == ["aarch64", "binary"]

    root.file("/etc/torwart").mkdir(parents=True)
    res = root.venv_run(edge, "torwart-edge", "check", "--config", write_example_site(root, (0, 0)))
    assert "site example (Dorfgemeinschaftshaus Beispiel)" in res.stdout and res.stdout.rstrip().endswith("config OK")
    root.file("/etc/torwart/hub.toml").write_text(HUB_TOML)
    root.venv_run(hub, "torwart-hub", "init", "--config", "/etc/torwart/hub.toml")
    assert root.file("/var/lib/torwart-hub/hub.sqlite3").is_file()
