"""A clean Debian 12 root made from Debian's packages (debootstrap), for package tests.

``debian_root(dest)`` bootstraps bookworm (``--variant=minbase --include=systemd``: what
every Debian and Raspberry Pi OS machine has) into ``dest`` from the mirror this machine's
apt uses, with a policy-rc.d that keeps maintainer scripts from starting daemons inside
it. The bootstrapped root is kept as a tarball in a cache directory outside the checkout
($TORWART_TEST_CACHE, default /var/cache/torwart-tests), one per day; the Debian packages
apt downloads into it are kept there too. Nothing is mounted into the root: apt, dpkg,
adduser and Python work without /proc, and removing the directory removes everything.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
       "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
APT = ["apt-get", "-y", "-q", "-o", "Dpkg::Use-Pty=0"]


class Unavailable(Exception):
    """This machine cannot make a Debian root (the reason is the message)."""


def cache_dir() -> Path:
    return Path(os.environ.get("TORWART_TEST_CACHE", "/var/cache/torwart-tests"))


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org if none is found)."""
    texts = [p.read_text(errors="replace") for p in (Path("/etc/apt/sources.list"),
                                                     *sorted(Path("/etc/apt/sources.list.d").glob("*")))
             if p.is_file() and p.suffix in ("", ".list", ".sources")]
    for text in texts:
        for url in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.MULTILINE):
            if url.rstrip("/").endswith("/debian"):
                return str(url)
    return "http://deb.debian.org/debian"


def debootstrap() -> str:
    """debootstrap's path, installing Debian's package when it is missing."""
    found = shutil.which("debootstrap", path=ENV["PATH"])
    if found:
        return found
    res = subprocess.run([*APT, "install", "debootstrap"], env=ENV, capture_output=True, text=True, check=False)
    found = shutil.which("debootstrap", path=ENV["PATH"])
    if found is None:
        raise Unavailable(f"debootstrap is missing and could not be installed: {res.stderr.strip()[-300:]}")
    return found


#: qemu-user's name for a Debian architecture (``foreign_root``).
QEMU = {"arm64": "aarch64", "amd64": "x86_64"}


@dataclass
class DebianRoot:
    path: Path
    #: In a foreign root: the qemu-user binary (inside the root) that runs its programs.
    qemu: str | None = None

    def run(self, *argv: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the root (as ``user``, else root); its output in the error."""
        spec = [f"--userspec={user}:{user}"] if user else []
        res = subprocess.run(["chroot", *spec, str(self.path), *argv], env=ENV, capture_output=True, text=True,
                             timeout=900, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {res.returncode}:\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def venv_run(self, venv: str, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``command`` of the virtual environment ``venv``; in a foreign root its Python
        runs through qemu (``-0`` gives it the environment's python3 as its argv[0])."""
        if self.qemu is None:
            return self.run(f"{venv}/bin/{command}", *args, check=check)
        python = os.readlink(self.file(f"{venv}/bin/python3"))
        script = [] if command == "python3" else [f"{venv}/bin/{command}"]
        return self.run(self.qemu, "-0", f"{venv}/bin/python3", python, *script, *args, check=check)

    def apt(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*APT, *args)

    def status(self, package: str) -> str:
        """dpkg's view: ``installed``, ``config-files``, or ``not-installed``."""
        res = self.run("dpkg-query", "-W", "-f", "${db:Status-Status}", package, check=False)
        return res.stdout.strip() or "not-installed"

    def ids(self, name: str) -> tuple[int, int] | None:
        """uid and primary gid of a user of this root."""
        for line in (self.path / "etc" / "passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == name:
                return int(f[2]), int(f[3])
        return None

    def group_members(self, group: str) -> list[str] | None:
        for line in (self.path / "etc" / "group").read_text().splitlines():
            f = line.split(":")
            if f[0] == group:
                return [m for m in f[3].split(",") if m]
        return None

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")


def _debootstrap(*args: str) -> None:
    res = subprocess.run([debootstrap(), *args, mirror()], env=ENV, capture_output=True, text=True, check=False,
                         timeout=1800)
    if res.returncode != 0:
        raise AssertionError(f"debootstrap failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")


def _bootstrap(dest: Path) -> None:
    _debootstrap("--variant=minbase", "--include=systemd", SUITE, str(dest))
    policy = dest / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# no daemon starts inside a test root\nexit 101\n")
    policy.chmod(0o755)


def _cached(dest: Path, name: str, make: Callable[[Path], None]) -> None:
    """``make(dest)``, or unpack what it made earlier today (cache/NAME-DATE.tar)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{name}-{dt.date.today().strftime('%Y%m%d')}.tar"
    for old in cache.glob(f"{name}-*.tar"):
        if old != tarball:
            old.unlink()
    if tarball.exists():
        dest.mkdir(parents=True)
        with tarfile.open(tarball) as t:
            t.extractall(dest, filter="fully_trusted")
        return
    make(dest)
    part = tarball.with_name(f"{tarball.name}.{os.getpid()}.part")
    with tarfile.open(part, "w") as t:
        t.add(dest, arcname=".")
    part.replace(tarball)


def debian_root(dest: Path, arch: str) -> DebianRoot:
    """A fresh root in ``dest`` (made, or unpacked from today's cached tarball)."""
    _cached(dest, f"{SUITE}-{arch}", _bootstrap)
    archives = cache_dir() / f"apt-archives-{arch}-{dt.date.today().strftime('%Y%m%d')}"
    for old in cache_dir().glob(f"apt-archives-{arch}-*"):
        if old != archives:
            shutil.rmtree(old)
    shutil.copy(Path("/etc/resolv.conf"), dest / "etc" / "resolv.conf", follow_symlinks=True)
    root = DebianRoot(dest)
    root.apt("update")
    if archives.is_dir():
        for deb in archives.glob("*.deb"):
            shutil.copy(deb, dest / "var" / "cache" / "apt" / "archives" / deb.name)
    return root


def foreign_root(dest: Path, arch: str) -> DebianRoot:
    """A root of another architecture whose programs run through qemu-user, without
    binfmt_misc (this machine's kernel is left alone): debootstrap's first stage with
    python3, every package it fetched unpacked (no maintainer script runs, so no user,
    no configuration: enough to run Python and what a .deb unpacked into it holds)."""
    qemu_name = f"qemu-{QEMU[arch]}-static"
    qemu = shutil.which(qemu_name, path=ENV["PATH"])
    if qemu is None:
        res = subprocess.run([*APT, "install", "qemu-user-static"], env=ENV, capture_output=True, text=True,
                             check=False)
        qemu = shutil.which(qemu_name, path=ENV["PATH"])
        if qemu is None:
            raise Unavailable(f"{qemu_name} is missing and could not be installed: {res.stderr.strip()[-300:]}")

    def make(d: Path) -> None:
        _debootstrap(f"--arch={arch}", "--foreign", "--variant=minbase", "--include=python3", SUITE, str(d))
        for deb in sorted((d / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(d)], check=True)

    _cached(dest, f"{SUITE}-{arch}-foreign", make)
    shutil.copy(qemu, dest / "usr" / "bin" / qemu_name)
    return DebianRoot(dest, qemu=f"/usr/bin/{qemu_name}")


def keep_downloads(root: DebianRoot, arch: str) -> None:
    """Keep what apt downloaded into ``root`` for the next run today."""
    archives = cache_dir() / f"apt-archives-{arch}-{dt.date.today().strftime('%Y%m%d')}"
    archives.mkdir(parents=True, exist_ok=True)
    for deb in root.file("/var/cache/apt/archives").glob("*.deb"):
        if not (archives / deb.name).exists():
            shutil.copy(deb, archives / deb.name)
