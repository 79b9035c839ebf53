"""``torwart-hub backup`` and ``restore``: the hub's whole state in one file, and back.

A backup is a gzip-compressed tar file, created owner-readable only (0600: it holds every
secret a hub has), with:

- ``manifest.json``: the format, when and by which version it was made, and for every
  other member its absolute path on the hub, its SHA-256, mode and owner;
- ``store/hub.sqlite3``: a consistent copy of the SQLite store made with SQLite's online
  backup API while the hub runs (members, credentials, bookings, events, cache versions,
  the signing-key ring's state, ...);
- ``files/N``: the config file, every file it names (the signing key and ``signing-keys/``,
  the enrollment key, the CA and its key, the sites' credential keys, passwords, tokens,
  client certificates), and the rest of the data directory (the broker's password files
  and ACL, its server certificate, whatever else the hub keeps there) except the store
  itself and the provisioning bundles (``provision/``: copies meant to be deleted).

``restore`` verifies the whole file first (every checksum, the store's integrity and that
this hub knows its schema) and touches nothing if anything is wrong; it refuses while a hub
runs on the data directory (``hub.runlock``) and, without ``force``, when it would replace
a file whose content differs. Files are written beside their target and renamed into place.

Cache versions stay safe: a site that holds a version the restored store never issued
reports it, and the hub issues a version above it (``hub.caches``: ``min_version``), so a
restored older store never hands a site a version it already passed.
"""

from __future__ import annotations

import grp
import gzip
import hashlib
import io
import json
import logging
import os
import pwd
import shutil
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from wire import software_version

from .config import HubConfig
from .errors import HubError
from .runlock import LOCK_NAME, RunLock
from .store import StoreError
from .store.sqlite.schema import MIGRATIONS
from .store.url import shown

log = logging.getLogger(__name__)

FORMAT = "torwart-hub-backup"
FORMAT_VERSION = 1
STORE_MEMBER = "store/hub.sqlite3"
#: Not copied from the data directory: the store (copied through the backup API instead),
#: its journal files, the run lock, and provisioning bundles.
_SKIP_NAMES = {LOCK_NAME}
_SKIP_DIRS = {"provision"}

Say = Callable[[str], None]


class BackupError(HubError):
    """A backup cannot be made, or a file is not a good backup, or a restore is refused."""


@dataclass(frozen=True)
class Item:
    """One member of a backup: ``name`` in the tar file, ``target`` its absolute path."""

    name: str
    target: str
    sha256: str
    mode: int
    owner: str | None
    group: str | None


@dataclass(frozen=True)
class Manifest:
    created_at: float
    software: str
    config: str
    data_dir: str
    store: Item
    files: list[Item]


def _owner(st: os.stat_result) -> tuple[str | None, str | None]:
    try:
        user: str | None = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = None
    try:
        group: str | None = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = None
    return user, group


def _named_files(value: Any) -> Iterator[str]:
    """Every ``*_file`` path the config names, in any section or site."""
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            v = getattr(value, name)
            if name.endswith("_file") and isinstance(v, str) and v:
                yield v
            elif isinstance(v, msgspec.Struct | list):
                yield from _named_files(v)
    elif isinstance(value, list):
        for v in value:
            yield from _named_files(v)


def hub_files(cfg: HubConfig, config_path: Path) -> list[Path]:
    """What a rebuilt hub needs besides its store: the config, the files it names, the other
    signing keys, and the data directory's files (see the module's docstring)."""
    store = cfg.hub.store_path.resolve()
    skip = {store, *(store.with_name(store.name + s) for s in ("-wal", "-shm", "-journal"))}
    found: list[Path] = [config_path.resolve(), *(Path(f).resolve() for f in _named_files(cfg))]
    keys_dir = Path(cfg.hub.signing_key_file).parent / "signing-keys"
    if keys_dir.is_dir():
        found += sorted(p.resolve() for p in keys_dir.iterdir())
    data = cfg.hub.data_path.resolve()
    if data.is_dir():
        for root, dirs, names in os.walk(data):
            dirs[:] = sorted(d for d in dirs if not (Path(root) == data and d in _SKIP_DIRS))
            found += [Path(root, n) for n in sorted(names) if n not in _SKIP_NAMES]
    out: list[Path] = []
    for p in found:
        if p not in skip and p not in out and p.is_file():
            out.append(p)
    return out


def _copy_store(src: Path, dst: Path, say: Say) -> None:
    """A consistent copy of the live store (SQLite's online backup API), with progress."""
    shown = -1

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal shown
        pct = 100 * (total - remaining) // max(total, 1)
        if pct // 10 > shown // 10 or remaining == 0:
            shown = pct
            say(f"store: {pct}% of {total} pages")

    try:
        source = sqlite3.connect(f"{src.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the store {src}: {exc}") from None
    try:
        with sqlite3.connect(dst) as target:
            source.backup(target, pages=1024, progress=progress)
            _no_node_running(target)
        target.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the store {src}: {exc}") from None
    finally:
        source.close()


def _no_node_running(copy: sqlite3.Connection) -> None:
    """In the copy no node runs (nodes stopped, the lease free), as after any restore: a node
    started then (same process, a reused pid) is no twin of one running at the backup."""
    tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if {"nodes", "leader_lease"} <= tables:
        copy.execute("UPDATE nodes SET role = 'stopped' WHERE role <> 'stopped'")
        copy.execute("UPDATE leader_lease SET previous = holder, holder = NULL WHERE holder IS NOT NULL")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _item(name: str, path: Path, data_path: Path | None = None) -> Item:
    st = path.stat()
    user, group = _owner(st)
    return Item(name, str(path), _sha256_file(data_path or path), st.st_mode & 0o7777, user, group)


def backup(cfg: HubConfig, config_path: Path, out: Path, say: Say) -> Manifest:
    """Write the hub's backup to ``out`` (replacing it whole, 0600) while the hub may run;
    verify what was written before it takes ``out``'s place. BackupError if it cannot."""
    try:
        store = cfg.hub.store_path.resolve()
    except StoreError:
        raise BackupError("the store is not a SQLite file: back up its database with the database's own "
                          f"tools (e.g. pg_dump) ({shown(cfg.hub.store_url)})") from None
    if not store.is_file():
        raise BackupError(f"there is no store at {store} (torwart-hub init makes one)")
    out = out.resolve()
    if out.is_dir():
        raise BackupError(f"{out} is a directory; name the backup file")
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise BackupError(f"cannot write beside {out}: {exc.strerror or exc}") from None
    try:
        copy = work / "hub.sqlite3"
        _copy_store(store, copy, say)
        files = [_item(f"files/{i}", p) for i, p in enumerate(hub_files(cfg, config_path))]
        manifest = Manifest(time.time(), software_version(), str(config_path.resolve()),
                            str(cfg.hub.data_path.resolve()), _item(STORE_MEMBER, store, copy), files)
        tmp = work / "backup.tar.gz"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, "manifest.json", json.dumps(asdict(manifest), indent=1).encode())
            tar.add(copy, STORE_MEMBER, recursive=False)
            for item in files:
                say(f"file: {item.target}")
                tar.add(item.target, item.name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        say("verifying the backup")
        with _opened(tmp, work) as (checked, _):
            if checked != manifest:
                raise BackupError("the backup does not read back as written")
        os.replace(tmp, out)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _manifest(data: bytes) -> Manifest:
    try:
        doc = json.loads(data)
        if doc.get("format", FORMAT) != FORMAT:
            raise ValueError("not a torwart hub backup")
        return Manifest(doc["created_at"], doc["software"], doc["config"], doc["data_dir"], Item(**doc["store"]),
                        [Item(**f) for f in doc["files"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"the backup's manifest is unreadable: {exc}") from None


@contextmanager
def _opened(path: Path, work: Path | None = None) -> Iterator[tuple[Manifest, Path]]:
    """Read and verify the backup at ``path``: yield its manifest and a directory holding
    every member under its name (checksums, store integrity and schema checked)."""
    try:  # the whole file, to its gzip checksum: not only the members read below
        with gzip.open(path, "rb") as whole:
            while whole.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"{path} is not a hub backup, or is damaged: {exc}") from None
    tmp = Path(tempfile.mkdtemp(prefix=".torwart-restore.", dir=work))
    try:
        try:
            tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 (closed by the with below)
        except (OSError, tarfile.TarError) as exc:
            raise BackupError(f"{path} is not a hub backup: {exc}") from None
        try:
            manifest = _extract(tar, tmp)
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
            raise BackupError(f"{path} is damaged: {exc}") from None
        _check_store(tmp / STORE_MEMBER)
        yield manifest, tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(tar: tarfile.TarFile, tmp: Path) -> Manifest:
    """Every member the manifest names into ``tmp``, each checked against its checksum."""
    with tar:
        try:
            head = tar.extractfile("manifest.json")
        except KeyError:
            raise BackupError("not a hub backup: it has no manifest") from None
        if head is None:
            raise BackupError("not a hub backup: its manifest is not a file")
        manifest = _manifest(head.read())
        for item in [manifest.store, *manifest.files]:
            if not Path(item.target).is_absolute() or not item.name.startswith(("store/", "files/")) \
                    or ".." in Path(item.name).parts:
                raise BackupError(f"the backup names an unsafe path: {item.name} → {item.target}")
            try:
                member = tar.extractfile(item.name)
            except (KeyError, tarfile.TarError):
                raise BackupError(f"the backup lacks {item.name} ({item.target})") from None
            if member is None:
                raise BackupError(f"the backup's {item.name} is not a file")
            dest = tmp / item.name
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                with member, dest.open("wb") as f:
                    os.chmod(dest, 0o600)
                    shutil.copyfileobj(member, f, 1 << 20)
            except (OSError, tarfile.TarError, EOFError) as exc:
                raise BackupError(f"the backup's {item.name} is damaged: {exc}") from None
            if _sha256_file(dest) != item.sha256:
                raise BackupError(f"the backup's copy of {item.target} is damaged (checksum mismatch)")
        return manifest


def _check_store(path: Path) -> None:
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
        conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the backup's store is not a usable hub store: {exc}") from None
    if ok != "ok":
        raise BackupError(f"the backup's store fails SQLite's integrity check: {ok}")
    unknown = set(names) - {fn.__name__ for fn in MIGRATIONS}
    if unknown:
        raise BackupError(f"the backup's store is from a newer hub (migrations {', '.join(sorted(unknown))}); "
                          "restore it with that version")


def verify(path: Path) -> Manifest:
    """Read and verify a backup without restoring anything; its manifest."""
    with _opened(path) as (manifest, _):
        return manifest


def restore(path: Path, config_path: Path, *, force: bool, say: Say) -> Manifest:
    """Restore the backup at ``path`` (see the module's docstring); BackupError, with nothing
    changed, if it is not a good backup, a hub runs, ``config_path`` is not the config it
    was made of, or (without ``force``) it would replace a file that differs."""
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    with _opened(path) as (manifest, tmp):
        if Path(manifest.config) != config_path.resolve():
            raise BackupError(f"this backup is of the hub configured in {manifest.config}; pass "
                              f"--config {manifest.config} (the files go back to the paths they had)")
        data_dir = Path(manifest.data_dir)
        missing = [p for p in (*reversed(data_dir.parents), data_dir) if not p.exists()]
        lock = RunLock.acquire(data_dir, exclusive=True)
        ids = _owner_ids(manifest.store)
        if ids is not None:  # what the lock made belongs to the hub's user, as the store does
            for p in [*missing, data_dir / LOCK_NAME]:
                os.chown(p, *ids)
        try:
            items = [manifest.store, *manifest.files]
            differ = [i.target for i in items if Path(i.target).exists() and _sha256_file(Path(i.target)) != i.sha256]
            if differ and not force:
                raise BackupError(f"{len(differ)} file(s) would be replaced, e.g. {', '.join(differ[:3])}; "
                                  "pass --force to replace them")
            for item in items:
                say(f"{'store' if item is manifest.store else 'file'}: {item.target}")
                _put(tmp / item.name, item, store=item is manifest.store)
        finally:
            lock.release()
    return manifest


def _owner_ids(item: Item) -> tuple[int, int] | None:
    """The recorded owner's (uid, gid) here, when restoring as root and they exist."""
    if os.geteuid() != 0 or item.owner is None:
        return None
    try:
        return pwd.getpwnam(item.owner).pw_uid, grp.getgrnam(item.group).gr_gid if item.group else -1
    except KeyError:
        log.warning("%s: owner %s:%s unknown here; left to root", item.target, item.owner, item.group)
        return None


def _put(src: Path, item: Item, *, store: bool) -> None:
    target = Path(item.target)
    ids = _owner_ids(item)
    missing = [p for p in reversed(target.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if ids is not None:
        for d in missing:  # directories this restore made belong to the files' owner, not to root
            os.chown(d, *ids)
    tmp = target.with_name(f".{target.name}.restore")
    tmp.unlink(missing_ok=True)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, item.mode)
    if ids is not None:
        os.chown(tmp, *ids)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    if store:
        # A WAL left from the store being replaced would be replayed into the restored one.
        for suffix in ("-wal", "-shm", "-journal"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, target)
