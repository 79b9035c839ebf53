"""Build Torwart's Debian packages (issue #13): ``torwart-edge`` and ``torwart-hub``.

    scripts/build-deb [--arch amd64] [--arch arm64] [--role edge|hub] [--out dist] [--no-pin]

For Debian 12 / Raspberry Pi OS bookworm (Python 3.11, glibc 2.36). Writes
``OUT/torwart-ROLE_VERSION_ARCH.deb`` for every role and architecture asked for (default:
both roles, this machine's architecture). Any architecture builds on any machine: nothing
runs for the target, so arm64 packages for the Pi build on an amd64 machine.

How a package is made:

1. One wheel of this checkout (``pip wheel``; the packages in it are the ones pyproject's
   ``[tool.setuptools.packages.find]`` discovers); its version (pyproject's, the single
   source) becomes the package version, its console scripts the commands.
2. For each architecture, pip installs that wheel with its dependencies, binary wheels
   only, chosen for the target (``--platform manylinux_2_*_ARCH --python-version 3.11``),
   into a site-packages directory; every shared object in it is checked to be for that
   architecture. By default the versions are those installed in the Python running this
   script (the project's .venv: what the test suite ran with); ``--no-pin`` takes the newest.
3. That directory becomes a virtual environment owned by dpkg, ``/usr/lib/torwart-ROLE``
   (``pyvenv.cfg`` with ``home = /usr/bin``, ``bin/python3`` a link to Debian's python3.11,
   the role's command as a script there and a link in /usr/bin), beside the systemd unit
   from firmware_configs/systemd (ExecStart pointed at /usr/bin), the docs, and the
   maintainer scripts of packaging/deb (user, directories, unit state; see there).
4. ``dpkg-deb --root-owner-group --build``.

Exit status: 0 built; 1 the build failed (the message says where); 2 bad arguments
(nothing is written).
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging" / "deb"
ROLES = ("edge", "hub")
#: bookworm's Python and glibc: the wheels are chosen for these.
PYTHON = (3, 11)
GLIBC_MINOR = 36
MAINTAINER = "Torwart maintainers <maintainers@torwart.invalid>"


@dataclass(frozen=True)
class Arch:
    machine: str     # as in the manylinux platform tags
    elf_machine: int  # e_machine of its shared objects


ARCHES = {"amd64": Arch("x86_64", 62), "arm64": Arch("aarch64", 183)}


class BuildError(Exception):
    """The build cannot go on; the message says why."""


def debian_version(version: str) -> str:
    """A PEP 440 version as a Debian version that sorts the same way: ``1.2rc1`` →
    ``1.2~rc1``, ``1.2.dev3`` → ``1.2~~dev3``, ``1.2a1.dev3`` → ``1.2~a1~dev3``,
    ``1.2.post1`` → ``1.2+post1``, ``1.2+local`` → ``1.2+local``."""
    m = re.fullmatch(r"(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?(?:\+([a-z0-9.]+))?",
                     version)
    if m is None:
        raise BuildError(f"version {version!r} is not a normalised PEP 440 version (e.g. 1.2.0, 1.2.0rc1)")
    release, pre, pre_n, post, dev, local = m.groups()
    out = release
    if pre:
        out += f"~{pre}{pre_n}"
    if post is not None:
        out += f"+post{post}"
    if dev is not None:
        out += f"~dev{dev}" if pre or post is not None else f"~~dev{dev}"
    if local:
        out += f"+{local}"
    return out


def run(cmd: list[str], what: str) -> None:
    """Run ``cmd``; on failure raise BuildError with its output's tail."""
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")


def copy_source(dest: Path) -> None:
    """The checkout's files as git sees them (tracked, and new ones not ignored); without
    git, the tree minus what .gitignore names for this project."""
    files: list[str] = []
    if shutil.which("git") and (ROOT / ".git").exists():
        res = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True)
        files = [f for f in res.stdout.decode().split("\0") if f and (ROOT / f).is_file()]
    if not files:
        ignore = shutil.ignore_patterns(".git", ".venv", "dist", "build", "var", "*.egg-info", "__pycache__",
                                        ".*_cache", "test-output", "bench-results")
        shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
        return
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)


def build_wheel(work: Path) -> Path:
    src = work / "src"
    copy_source(src)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(work / "wheel"), str(src)],
        "building the torwart wheel")
    wheels = list((work / "wheel").glob("torwart-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one torwart wheel, found {[w.name for w in wheels]}")
    return wheels[0]


def wheel_info(wheel: Path) -> tuple[str, dict[str, str]]:
    """The wheel's version and its console scripts (name → ``module:function``)."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        version = next(line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                       if line.startswith("Version:"))
        ep_name = meta.replace("METADATA", "entry_points.txt")
        text = z.read(ep_name).decode() if ep_name in names else ""
    scripts: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            name, target = (x.strip() for x in line.split("=", 1))
            scripts[name] = target
    return version, scripts


def pins(path: Path) -> Path:
    """A pip constraints file: every distribution installed in this Python at its version."""
    lines = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                    if d.metadata["Name"] and d.metadata["Name"].lower() != "torwart"})
    path.write_text("\n".join(lines) + "\n")
    return path


def install_for(arch: str, wheel: Path, dest: Path, constraints: Path | None, extras: list[str]) -> None:
    """Install ``wheel`` with its dependencies and those of ``extras`` (pyproject's optional
    dependency groups) for ``arch`` into ``dest`` (binary wheels only)."""
    a = ARCHES[arch]
    platforms = [f"manylinux_2_{v}_{a.machine}" for v in range(17, GLIBC_MINOR + 1)] + [f"manylinux2014_{a.machine}"]
    if a.machine == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--only-binary=:all:", "--target", str(dest),
           "--implementation", "cp", "--python-version", f"{PYTHON[0]}.{PYTHON[1]}"]
    for p in platforms:
        cmd += ["--platform", p]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    run([*cmd, target], f"installing the dependencies for {arch}{' with ' + ', '.join(extras) if extras else ''}")
    shutil.rmtree(dest / "bin", ignore_errors=True)  # console scripts for this machine's Python
    check_elf(dest, arch)


def check_elf(tree: Path, arch: str) -> None:
    """Every ELF file under ``tree`` is a 64-bit object for ``arch``."""
    want = ARCHES[arch].elf_machine
    wrong = []
    for p in tree.rglob("*"):
        if not p.is_file() or p.is_symlink():
            continue
        with p.open("rb") as f:
            head = f.read(20)
        if head[:4] == b"\x7fELF" and (head[4] != 2 or int.from_bytes(head[18:20], "little") != want):
            wrong.append(str(p.relative_to(tree)))
    if wrong:
        raise BuildError(f"shared objects not built for {arch}: {', '.join(wrong[:5])}")


def glibc_needed(tree: Path) -> tuple[int, int] | None:
    """The newest glibc any installed wheel needs: per wheel the oldest manylinux tag in its
    WHEEL file (it runs on that glibc and later), then the newest of those."""
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    needed: list[tuple[int, int]] = []
    for wheel in tree.glob("*.dist-info/WHEEL"):
        found = []
        for tag in re.findall(r"^Tag: \S+-\S+-(\S+)$", wheel.read_text(), re.MULTILINE):
            m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
            if m:
                found.append((int(m.group(1)), int(m.group(2))))
            elif tag.split("_")[0] in legacy:
                found.append(legacy[tag.split("_")[0]])
        if found:
            needed.append(min(found))
    return max(needed, default=None)


def changelog(pkg: str, version: str) -> bytes:
    """A one-entry Debian changelog (gzip without a time stamp, as Debian wants it)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True, check=False).stdout.strip() if shutil.which("git") else ""
    text = (f"{pkg} ({version}) bookworm; urgency=medium\n\n  * Built by scripts/build-deb"
            f"{f' from {commit}' if commit else ''}.\n\n -- {MAINTAINER}  "
            f"{email.utils.formatdate(localtime=False)}\n")
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def unit_text(role: str) -> tuple[str, str, str]:
    """The role's unit from firmware_configs/systemd with ExecStart on /usr/bin, and its
    StateDirectory as a path and StateDirectoryMode."""
    pkg = f"torwart-{role}"
    src = ROOT / "firmware_configs" / "systemd" / f"{pkg}.service"
    text = src.read_text()
    body = text[text.index("[Unit]"):]
    body, n = re.subn(rf"^ExecStart=\S*{pkg}\b", f"ExecStart=/usr/bin/{pkg}", body, flags=re.MULTILINE)
    if n != 1:
        raise BuildError(f"{src}: no ExecStart= running {pkg}")
    doc = f"Documentation=file:///usr/share/doc/{pkg}/operations.md"
    if re.search(r"^Documentation=", body, re.MULTILINE):
        body = re.sub(r"^Documentation=.*$", doc, body, count=1, flags=re.MULTILINE)
    else:
        body = re.sub(r"^(Description=.*)$", rf"\1\n{doc}", body, count=1, flags=re.MULTILINE)
    state = re.search(r"^StateDirectory=([a-z0-9-]+)\s*$", body, re.MULTILINE)
    mode = re.search(r"^StateDirectoryMode=(0[0-7]{3})\s*$", body, re.MULTILINE)
    if state is None:
        raise BuildError(f"{src}: no StateDirectory= (the package creates that directory)")
    head = (f"# {pkg}.service, installed by the {pkg} package (scripts/build-deb, from\n"
            f"# firmware_configs/systemd/{pkg}.service). Left disabled on install; once its\n"
            f"# config is in /etc/torwart: systemctl enable --now {pkg}\n")
    return head + body, f"/var/lib/{state.group(1)}", mode.group(1) if mode else "0755"


@dataclass(frozen=True)
class RoleSpec:
    """One role's entry of packaging/deb/packages.toml (that file explains the keys)."""

    description: str
    depends: list[str]
    recommends: list[str]
    system_site_packages: bool
    files: dict[str, str]
    extras: list[str] = field(default_factory=list)


def role_spec(role: str, arch: str) -> RoleSpec:
    """packaging/deb/packages.toml for one role, with its architecture's additions."""
    where = PACKAGING / "packages.toml"
    spec = dict(tomllib.loads(where.read_text())[role])
    extra = spec.pop("arch", {}).get(arch, {})
    for key, value in extra.items():
        spec[key] = spec.get(key, []) + value if isinstance(value, list) else value
    try:
        return RoleSpec(**spec)
    except TypeError as exc:
        raise BuildError(f"{where}: [{role}]: {exc}") from None


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def stage(role: str, arch: str, version: str, scripts: dict[str, str], tree: Path, dest: Path) -> None:
    """Lay out the package's files and DEBIAN/ under ``dest``."""
    pkg = f"torwart-{role}"
    other = f"torwart-{'hub' if role == 'edge' else 'edge'}"
    spec = role_spec(role, arch)
    lib = dest / "usr" / "lib" / pkg
    py = f"python{PYTHON[0]}.{PYTHON[1]}"
    shutil.copytree(tree, lib / "lib" / py / "site-packages", symlinks=True)
    write(lib / "pyvenv.cfg", f"home = /usr/bin\ninclude-system-site-packages = "
          f"{'true' if spec.system_site_packages else 'false'}\nversion = {PYTHON[0]}.{PYTHON[1]}\n")
    (lib / "bin").mkdir()
    (lib / "bin" / "python3").symlink_to(f"/usr/bin/{py}")
    (lib / "bin" / "python").symlink_to("python3")
    if pkg not in scripts or not re.fullmatch(r"[\w.]+:\w+", scripts[pkg]):
        raise BuildError(f"the wheel has no console script {pkg} of the form module:function ({scripts})")
    module, func = scripts[pkg].split(":")
    write(lib / "bin" / pkg, f"#!/usr/lib/{pkg}/bin/python3\n# {pkg}: the wheel's entry point {scripts[pkg]}\n"
          f"import sys\n\nfrom {module} import {func}\n\nif __name__ == \"__main__\":\n    sys.exit({func}())\n",
          0o755)
    (dest / "usr" / "bin").mkdir(parents=True)
    (dest / "usr" / "bin" / pkg).symlink_to(f"../lib/{pkg}/bin/{pkg}")

    unit, state_dir, state_mode = unit_text(role)
    write(dest / "lib" / "systemd" / "system" / f"{pkg}.service", unit)
    doc = dest / "usr" / "share" / "doc" / pkg
    write(doc / "copyright", (PACKAGING / "copyright").read_text())
    write(doc / "operations.md", (ROOT / "docs" / "operations.md").read_text())
    dists = sorted(f"{p.name.removesuffix('.dist-info').replace('-', ' ', 1)}"
                   for p in tree.glob("*.dist-info"))
    write(doc / "python-packages.txt", "\n".join(dists) + "\n")
    (doc / "changelog.gz").write_bytes(changelog(pkg, debian_version(version)))
    conffiles = []
    for target, source in spec.files.items():
        if Path(target).is_absolute() or ".." in Path(target).parts or not (ROOT / source).is_file():
            raise BuildError(f"packages.toml: {role}.files: bad entry {target!r} = {source!r}")
        write(dest / target, (ROOT / source).read_text())
        if target.startswith("etc/"):
            conffiles.append("/" + target)

    for p in dest.rglob("*"):  # modes as Debian expects, whatever this machine's umask
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() or p.stat().st_mode & 0o100 else 0o644)

    size_kib = sum((p.stat().st_size + 1023) // 1024 for p in dest.rglob("*") if p.is_file() and not p.is_symlink())
    depends = [f"python3 (>= {PYTHON[0]}.{PYTHON[1]})", f"python3 (<< {PYTHON[0]}.{PYTHON[1] + 1})", py,
               *spec.depends]
    if glibc := glibc_needed(tree):
        depends.insert(0, f"libc6 (>= {glibc[0]}.{glibc[1]})")
    recommends = spec.recommends
    summary, _, long = spec.description.partition("\n")
    control = [f"Package: {pkg}", f"Version: {debian_version(version)}", f"Architecture: {arch}",
               f"Maintainer: {MAINTAINER}", f"Installed-Size: {size_kib}", f"Depends: {', '.join(depends)}"]
    if recommends:
        control.append(f"Recommends: {', '.join(recommends)}")
    control += ["Section: net", "Priority: optional", f"Description: {summary}"]
    control += [f" {line}" if line.strip() else " ." for line in long.splitlines()]
    debian = dest / "DEBIAN"
    write(debian / "control", "\n".join(control) + "\n")
    if conffiles:
        write(debian / "conffiles", "\n".join(conffiles) + "\n")
    subst = {"@PACKAGE@": pkg, "@OTHER@": other, "@STATE_DIR@": state_dir, "@STATE_MODE@": state_mode}
    for name in ("postinst", "prerm", "postrm"):
        text = (PACKAGING / name).read_text()
        for k, v in subst.items():
            text = text.replace(k, v)
        if left := re.findall(r"@[A-Z_]+@", text):
            raise BuildError(f"packaging/deb/{name}: placeholders left over: {', '.join(left)}")
        write(debian / name, text, 0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/build-deb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", choices=sorted(ARCHES),
                        help="target architecture, repeatable (default: this machine's)")
    parser.add_argument("--role", action="append", choices=ROLES, help="which package, repeatable (default: both)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the .deb files go (default: dist/)")
    parser.add_argument("--xz-level", type=int, choices=range(10), default=6, metavar="0-9",
                        help="compression (default: 6, dpkg's; the tests take 1: 5x faster, 20%% larger)")
    parser.add_argument("--no-pin", action="store_true",
                        help="take the newest dependency versions instead of this Python's installed ones")
    args = parser.parse_args(argv)
    if shutil.which("dpkg-deb") is None:
        print("build-deb: error: dpkg-deb not found (Debian's dpkg package)", file=sys.stderr)
        return 2
    arches = args.arch or [subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                                          check=True).stdout.strip()]
    if arches[0] not in ARCHES:
        parser.error(f"this machine's architecture {arches[0]} is not one I build for; pass --arch "
                     f"({', '.join(sorted(ARCHES))})")
    try:
        roles = args.role or list(ROLES)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="torwart-deb-") as tmp:
            work = Path(tmp)
            wheel = build_wheel(work)
            version, scripts = wheel_info(wheel)
            debian_version(version)
            constraints = None if args.no_pin else pins(work / "constraints.txt")
            args.out.mkdir(parents=True, exist_ok=True)
            for arch in dict.fromkeys(arches):
                trees: dict[tuple[str, ...], Path] = {}  # one install per set of extras
                for role in dict.fromkeys(roles):
                    extras = tuple(sorted(role_spec(role, arch).extras))
                    if extras not in trees:
                        trees[extras] = work / f"site-{arch}-{'-'.join(extras) or 'base'}"
                        install_for(arch, wheel, trees[extras], constraints, list(extras))
                    tree = trees[extras]
                    dest = work / f"{role}-{arch}"
                    stage(role, arch, version, scripts, tree, dest)
                    out = args.out / f"torwart-{role}_{debian_version(version)}_{arch}.deb"
                    part = out.with_name(out.name + ".part")
                    try:
                        run(["dpkg-deb", "--root-owner-group", "-Zxz", f"-z{args.xz_level}", "--build", str(dest),
                             str(part)], f"dpkg-deb for {out.name}")
                        part.replace(out)
                    finally:
                        part.unlink(missing_ok=True)
                    print(f"{out}  {out.stat().st_size / 1e6:.1f} MB")
        print(f"built in {time.monotonic() - started:.0f} s")
        return 0
    except BuildError as exc:
        print(f"build-deb: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
