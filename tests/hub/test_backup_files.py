"""What a backup holds and how a restore refuses bad input, on an initialised hub (``init`` and
``site add``: CA, broker files, keys) without a broker: the backup covers the files a
rebuilt hub needs and no provisioning bundle; a restore onto an empty machine puts every
file back with its mode; a file damaged anywhere, a backup from a newer hub and an unsafe
path are refused with nothing changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from hub.__main__ import main
from testkit.booking_fake import BookingPlatform
from testkit.postgres import Postgres, fresh_store_url
from testkit.util import free_port
from tests.hub.test_provision import hub_config

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def hub_dir(tmp_path: Path, booking_platform: BookingPlatform, capsys: Capsys) -> Path:
    path = hub_config(tmp_path / "hub", base_url=booking_platform.base_url, token=booking_platform.token,
                      mqtt_port=free_port())
    assert main(["init", "--config", str(path)]) == 0
    assert main(["site", "add", "minheim", "--config", str(path), "--broker-host", "mqtt.example"]) == 0
    capsys.readouterr()
    return path.parent


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file() and "provision" not in p.parts
            and not p.name.startswith("hub.sqlite3") and p.name != "hub.run.lock"}


def test_a_backup_restores_every_file_onto_an_empty_machine(hub_dir: Path, tmp_path: Path, capsys: Capsys) -> None:
    cfg = str(hub_dir / "hub.toml")
    backup = tmp_path / "b.tar.gz"
    assert main(["backup", str(backup), "--config", cfg]) == 0
    with tarfile.open(backup) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    names = {Path(f["target"]).relative_to(hub_dir).as_posix() for f in manifest["files"]}
    assert {"hub.toml", "data/ca/ca.key", "data/ca/ca.crt", "data/mosquitto/passwd", "data/mosquitto/acl"} <= names
    assert not any("provision" in n for n in names)
    before = _tree(hub_dir)
    shutil.rmtree(hub_dir)
    assert main(["restore", str(backup), "--config", cfg]) == 0
    assert _tree(hub_dir) == before
    assert main(["sites", "--config", cfg]) == 0  # the restored store opens
    assert "minheim" in capsys.readouterr().out


def test_a_damaged_backup_is_refused_wherever_it_is_damaged(hub_dir: Path, tmp_path: Path, capsys: Capsys) -> None:
    cfg = str(hub_dir / "hub.toml")
    backup = tmp_path / "b.tar.gz"
    assert main(["backup", str(backup), "--config", cfg]) == 0
    raw = backup.read_bytes()
    before = _tree(hub_dir)
    for at in (10, len(raw) // 4, len(raw) // 2, len(raw) - 12, len(raw) - 3):
        bad = bytearray(raw)
        bad[at] ^= 0x55
        path = tmp_path / f"bad-{at}.tar.gz"
        path.write_bytes(bytes(bad))
        assert main(["restore", str(path), "--config", cfg, "--force"]) == 1, at
        assert "error:" in capsys.readouterr().err
    truncated = tmp_path / "short.tar.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    assert main(["restore", str(truncated), "--config", cfg, "--force"]) == 1
    assert _tree(hub_dir) == before


def _rewrite(backup: Path, out: Path, change: dict[str, object]) -> None:
    """``backup`` with its manifest changed (the members as they are)."""
    with tarfile.open(backup) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                doc = json.loads(data)
                doc.update(change)
                data = json.dumps(doc).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))


def test_an_unsafe_path_or_a_foreign_format_is_refused(hub_dir: Path, tmp_path: Path, capsys: Capsys) -> None:
    cfg = str(hub_dir / "hub.toml")
    backup = tmp_path / "b.tar.gz"
    assert main(["backup", str(backup), "--config", cfg]) == 0
    with tarfile.open(backup) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    files = manifest["files"]
    evil = [{**files[0], "name": "files/../../etc/passwd"}, *files[1:]]
    relative = [{**files[0], "target": "relative/hub.toml"}, *files[1:]]
    for i, change in enumerate(({"files": evil}, {"files": relative}, {"format": "something-else"})):
        out = tmp_path / f"changed-{i}.tar.gz"
        _rewrite(backup, out, change)
        assert main(["restore", str(out), "--config", cfg, "--force"]) == 1
        err = capsys.readouterr().err
        assert "unsafe path" in err or "not a torwart hub backup" in err, err


def test_a_hub_on_postgresql_is_not_backed_up_here_and_its_password_is_not_shown(
    hub_dir: Path, tmp_path: Path, capsys: Capsys, postgres_server: Postgres,
) -> None:
    url = fresh_store_url(postgres_server)  # with the password in it
    assert postgres_server.password in url
    toml = hub_dir / "hub.toml"
    toml.write_text(toml.read_text().replace('data_dir = "data"\n', f'data_dir = "data"\ndatabase = "{url}"\n', 1))
    backup = tmp_path / "b.tar.gz"
    assert main(["backup", str(backup), "--config", str(toml)]) == 1
    out, err = capsys.readouterr()
    assert "the store is not a SQLite file" in err and "pg_dump" in err and ":***@" in err
    assert postgres_server.password not in out + err
    assert not backup.exists() and list(tmp_path.glob(".b.tar.gz.*")) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_restored_as_root_files_and_new_directories_belong_to_their_owner(hub_dir: Path, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    for p in [hub_dir, *hub_dir.rglob("*")]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    cfg = str(hub_dir / "hub.toml")
    backup = tmp_path / "b.tar.gz"
    assert main(["backup", str(backup), "--config", cfg]) == 0
    shutil.rmtree(hub_dir)
    assert main(["restore", str(backup), "--config", cfg]) == 0
    for p in [hub_dir / "data", hub_dir / "data" / "ca", hub_dir / "data" / "ca" / "ca.key", hub_dir / "hub.toml"]:
        assert (p.stat().st_uid, p.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), p
    assert stat.S_IMODE((hub_dir / "data" / "ca" / "ca.key").stat().st_mode) == 0o600
