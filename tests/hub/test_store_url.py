"""Store URLs: ``open_store`` picks the implementation by the URL's scheme, takes plain paths
as SQLite files (as before URLs), refuses what it cannot open with the scheme named and
nothing created; hub.toml's ``[hub] store`` takes a URL or a path, and a config without
it keeps its database where it always was."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from hub import config
from hub.errors import HubError
from hub.store import SCHEMES, Store, StoreError, open_store, scheme_of, sqlite_path
from tests.hub.test_hub_config import refused, write_hub_config


def open_alias(url: str) -> Store:
    """A second "implementation" for the registry test: ``alias:PATH`` is the SQLite store at PATH."""
    return open_store("sqlite:" + url.split(":", 1)[1])


def _roundtrip(url: str | os.PathLike[str], check: Path) -> None:
    with open_store(url) as s:
        s.add_member("m1", "Anna")
    assert check.is_file()
    with open_store(check) as s:
        assert [m.id for m in s.members()] == ["m1"]


def test_plain_paths_and_sqlite_urls_open_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "a" / "hub.sqlite3"
    _roundtrip(db, db)  # a PathLike
    _roundtrip(str(db), db)  # a plain path, as hub.toml files and callers gave it before URLs
    _roundtrip(f"sqlite://{db}", db)  # sqlite:///abs/path
    _roundtrip(f"SQLite:{db}", db)  # the scheme is case-insensitive; one slash is absolute too
    monkeypatch.chdir(tmp_path)
    _roundtrip("sqlite:b/hub.sqlite3", tmp_path / "b" / "hub.sqlite3")  # relative to the working directory
    assert scheme_of(db) == scheme_of(str(db)) == scheme_of(f"sqlite://{db}") == "sqlite"
    assert sqlite_path(f"sqlite://{db}") == sqlite_path(str(db)) == db


@pytest.mark.parametrize(("url", "named"), [
    ("oracle://torwart:s3cret@db.example/hub", "'oracle'"),
    ("mysql:///var/lib/hub.db", "'mysql'"),
])
def test_an_unknown_scheme_is_refused_naming_it_and_the_supported_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, named: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert isinstance(info.value, HubError)
    text = str(info.value)
    assert named in text and "supported: postgresql, sqlite" in text
    assert "s3cret" not in text
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.parametrize(("url", "why"), [
    ("", "empty store URL"),
    ("   ", "empty store URL"),
    ("sqlite://dbhost/hub.sqlite3", "names no host"),
    ("sqlite:", "names no file"),
    ("sqlite:///", "names no file"),
    ("sqlite:///tmp/hub.sqlite3?mode=ro", "no query"),
])
def test_a_malformed_sqlite_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(StoreError, match=why):
        open_store(url)


def test_a_second_implementation_is_one_line_in_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError, match="'alias'"):
        open_store(f"alias:{tmp_path / 'x.sqlite3'}")
    monkeypatch.setitem(SCHEMES, "alias", "tests.hub.test_store_url:open_alias")
    _roundtrip(f"alias:{tmp_path / 'x.sqlite3'}", tmp_path / "x.sqlite3")
    with pytest.raises(StoreError, match=r"supported: alias, postgresql, sqlite"):
        open_store("nosuch:x")


# --- hub.toml ---------------------------------------------------------------------------------


def _with_store(tmp_path: Path, line: str) -> Path:
    path = write_hub_config(tmp_path)
    path.write_text(path.read_text().replace('data_dir = "data"\n', f'data_dir = "data"\n{line}\n', 1))
    return path


def test_a_config_without_a_store_key_keeps_its_database_in_the_data_dir(tmp_path: Path) -> None:
    cfg = config.load(write_hub_config(tmp_path))
    assert cfg.hub.store is None
    assert cfg.hub.store_path == tmp_path / "data" / "hub.sqlite3"
    assert cfg.hub.store_url == str(tmp_path / "data" / "hub.sqlite3")
    _roundtrip(cfg.hub.store_url, tmp_path / "data" / "hub.sqlite3")


@pytest.mark.parametrize(("line", "where"), [
    ('store = "sqlite:db/hub.db"', "db/hub.db"),  # relative to the config file's directory
    ('store = "db/plain.db"', "db/plain.db"),  # a plain path, as everywhere in hub.toml
])
def test_a_relative_store_resolves_against_the_config_file(tmp_path: Path, line: str, where: str) -> None:
    cfg = config.load(_with_store(tmp_path, line))
    assert cfg.hub.store_path == tmp_path / where
    _roundtrip(cfg.hub.store_url, tmp_path / where)


def test_an_absolute_store_url_is_taken_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "hub.sqlite3"
    cfg = config.load(_with_store(tmp_path, f'store = "sqlite://{db}"'))
    assert (cfg.hub.store_url, cfg.hub.store_path) == (f"sqlite://{db}", db)
    _roundtrip(cfg.hub.store_url, db)


@pytest.mark.parametrize(("line", "why"), [
    ('store = "oracle://torwart:s3cret@db.example/hub"', "unknown scheme 'oracle'; supported: postgresql, sqlite"),
    ('store = "postgresql://torwart:s3cret@db.example/"', "names no database"),
    ('store = "postgresql://torwart:s3cret@db.example:54x/hub"', "port must be a number"),
    ('store = "sqlite://dbhost/hub.db"', "names no host"),
    ('store = ""', "empty store URL"),
])
def test_a_store_the_hub_cannot_open_is_refused_naming_the_key(tmp_path: Path, line: str, why: str) -> None:
    err = refused(_with_store(tmp_path, line))
    assert err.key == "hub.store"
    assert why in str(err) and "s3cret" not in str(err)
    assert not (tmp_path / "data").exists()


def test_a_postgresql_database_and_its_password_file_from_hub_toml(tmp_path: Path) -> None:
    pw = tmp_path / "db.password"
    pw.write_text("generated\n")
    pw.chmod(0o600)
    url = "postgresql://torwart@db.example:5432/torwart"
    cfg = config.load(_with_store(tmp_path, f'database = "{url}"\ndatabase_password_file = "db.password"'))
    assert cfg.hub.store_url == f"{url}?password_file={quote(str(pw), safe='')}"
    assert scheme_of(cfg.hub.store_url) == "postgresql"
    with pytest.raises(StoreError, match="not a SQLite store"):
        _ = cfg.hub.store_path
    pw.chmod(0o644)
    err = refused(_with_store(tmp_path, f'database = "{url}"\ndatabase_password_file = "db.password"'))
    assert err.key == "hub.database_password_file" and "chmod 600" in str(err)


@pytest.mark.parametrize(("lines", "key", "why"), [
    ('store = "sqlite:hub.sqlite3"\ndatabase = "postgresql://t@h/d"', "hub.database", "not both"),
    ('database_password_file = "pw"', "hub.database_password_file", "needs a postgresql:// database"),
    ('store = "sqlite:hub.sqlite3"\ndatabase_password_file = "pw"', "hub.database_password_file", "needs a postgresql"),
    ('database = "postgresql://t@h/"', "hub.database", "names no database"),
])
def test_store_keys_that_do_not_go_together_are_refused(tmp_path: Path, lines: str, key: str, why: str) -> None:
    err = refused(_with_store(tmp_path, lines), check_files=False)
    assert err.key == key and why in str(err)
