"""Dashboard accounts: password hashes, users and sessions in the store, and the
``torwart-hub users`` commands (password file, prompt on a real terminal, refusals)."""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from hub.__main__ import main as hub_main
from hub.dashboard.passwords import hash_password, verify_password
from hub.store import UserExists, open_store
from testkit.util import wait_for
from tests.hub.store_contract import store_url_fixture  # noqa: F401

SITES_TOML = {
    "hub": {"data_dir": "data", "signing_key_file": "signing.key"},
    "mqtt": {"host": "127.0.0.1", "port": 1883},
    "booking": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "token_file": "platform.token"},
    "sites": [
        {"id": "minheim", "cred_key_file": "minheim.key",
         "rooms": [{"id": "coworking", "resources": ["r1"], "doors": ["eingang"]}]},
        {"id": "wittlich", "cred_key_file": "wittlich.key",
         "rooms": [{"id": "coworking", "resources": ["r2"], "doors": ["eingang"]}]},
    ],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(SITES_TOML))
    return path


def password_file(tmp_path: Path, password: str, mode: int = 0o600) -> str:
    f = tmp_path / f"pw-{secrets.token_hex(4)}"
    f.write_text(password + "\n")
    f.chmod(mode)
    return str(f)


def test_a_password_hash_is_salted_scrypt_and_verifies_only_the_password() -> None:
    pw = secrets.token_urlsafe(12)
    h1, h2 = hash_password(pw), hash_password(pw)
    assert h1.startswith("scrypt$15$8$1$") and h1 != h2  # a fresh salt each time
    assert verify_password(pw, h1) and verify_password(pw, h2)
    assert not verify_password(pw + "x", h1)
    assert not verify_password(pw, "scrypt$15$8$1$not-base64$x")
    assert not verify_password(pw, "md5$abc")
    assert pw not in h1


def test_sessions_expire_and_go_with_their_user(store_url: str) -> None:
    with open_store(store_url) as store:
        store.add_user("anna", "caretaker", ["minheim"], hash_password(secrets.token_urlsafe(12)))
        with pytest.raises(UserExists):
            store.add_user("anna", "admin", None, "x")
        store.create_session("k1", "anna", "csrf-1", now=1000.0, expires_at=2000.0)
        row = store.get_session("k1", 1500.0)
        assert row is not None and row.user.sites == ("minheim",) and row.csrf == "csrf-1"
        assert "csrf-1" not in repr(row) and "scrypt" not in repr(row)
        assert store.get_session("k1", 2000.0) is None  # expired
        assert store.active_sessions(1500.0) == {"anna": 1}
        store.create_session("k2", "anna", "csrf-2", now=3000.0, expires_at=4000.0)  # purges k1
        assert store.active_sessions(0.0) == {"anna": 1}
        assert store.remove_user("anna")
        assert store.get_session("k2", 3500.0) is None
        assert not store.remove_user("anna")


def test_users_add_list_and_remove(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(config)
    pw = secrets.token_urlsafe(12)
    assert hub_main(["users", "add", "anna", "--role", "caretaker", "--sites", "minheim",
                     "--password-file", password_file(tmp_path, pw), "--config", cfg]) == 0
    assert hub_main(["users", "add", "boss", "--role", "admin",
                     "--password-file", password_file(tmp_path, secrets.token_urlsafe(12)), "--config", cfg]) == 0
    assert hub_main(["users", "list", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "anna" in out and "caretaker" in out and "minheim" in out and "boss" in out and "*" in out
    assert pw not in out
    with open_store(tmp_path / "data" / "hub.sqlite3") as store:
        anna = store.get_user("anna")
        assert anna is not None and verify_password(pw, anna.password_hash)
    assert hub_main(["users", "remove", "anna", "--config", cfg]) == 0
    assert hub_main(["users", "remove", "anna", "--config", cfg]) == 1
    assert "no user 'anna'" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "caretaker"], "a caretaker needs --sites"),
    (["--role", "caretaker", "--sites", "altdorf"], "no site 'altdorf'"),
    (["--role", "admin", "--password-file", "WEAK"], "at least 10 characters"),
    (["--role", "admin", "--password-file", "OPEN"], "accessible by group or others"),
])
def test_users_add_refuses_bad_input(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     args: list[str], message: str) -> None:
    files = {"WEAK": password_file(tmp_path, "short"),
             "OPEN": password_file(tmp_path, secrets.token_urlsafe(12), 0o644)}
    args = [files.get(a, a) for a in args]
    if "--password-file" not in args:
        args += ["--password-file", password_file(tmp_path, secrets.token_urlsafe(12))]
    assert hub_main(["users", "add", "anna", *args, "--config", str(config)]) == 1
    assert message in capsys.readouterr().err


def test_users_add_refuses_a_duplicate_name(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for expected in (0, 1):
        assert hub_main(["users", "add", "anna", "--role", "admin", "--config", str(config),
                         "--password-file", password_file(tmp_path, secrets.token_urlsafe(12))]) == expected
    assert "exists already" in capsys.readouterr().err


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "hub", "users", "add", "anna", "--role", "admin", "--config", str(config), *args]


def test_without_a_password_file_users_add_refuses_when_stdin_is_no_terminal(config: Path) -> None:
    r = subprocess.run(_cli(config), check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                       cwd=Path(__file__).parents[2])
    assert r.returncode == 1
    assert "stdin is not a terminal" in r.stderr and "--password-file" in r.stderr


def test_without_a_password_file_users_add_asks_twice_on_a_terminal(config: Path, tmp_path: Path) -> None:
    """A real pty as the controlling terminal (getpass reads /dev/tty)."""
    pw = secrets.token_urlsafe(12)
    main_fd, sub_fd = os.openpty()
    sub_name = os.ttyname(sub_fd)
    # The child becomes a session leader and opens the pty, which makes it its terminal.
    boot = ("import os, sys, runpy; os.setsid(); fd = os.open(sys.argv[1], os.O_RDWR); "
            "[os.dup2(fd, n) for n in (0, 1, 2)]; sys.argv = ['hub'] + sys.argv[2:]; "
            "runpy.run_module('hub', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", boot, sub_name, *_cli(config)[3:]], cwd=Path(__file__).parents[2],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(sub_fd)
    seen = b""

    def read_until(text: bytes) -> bool:
        nonlocal seen
        # Never block past wait_for's deadline: read only what is there.
        if select.select([main_fd], [], [], 0.2)[0]:
            try:
                seen += os.read(main_fd, 1024)
            except OSError:
                return False
        return text in seen

    try:
        # Generous: the child imports the whole hub first, and a loaded CI machine is slow.
        wait_for(lambda: read_until(b"password for anna: "), 60, what="the first prompt")
        os.write(main_fd, pw.encode() + b"\n")
        wait_for(lambda: read_until(b"the same again: "), 60, what="the second prompt")
        os.write(main_fd, pw.encode() + b"\n")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main_fd)
    assert pw.encode() not in seen  # not echoed
    with open_store(tmp_path / "data" / "hub.sqlite3") as store:
        anna = store.get_user("anna")
        assert anna is not None and verify_password(pw, anna.password_hash)
