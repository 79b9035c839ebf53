"""The broker's password file is edited by several processes at once: a running hub adds a
site's login when it joins by password, the command line revokes another site. Each
read-modify-write holds a lock, so that no writer loses another's change."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from hub.provision.hub_init import edit_broker_password, set_broker_password
from hub.provision.mosquitto import password_line


def _writer(path: str, prefix: str, n: int, drop: list[str]) -> None:
    for i in range(n):
        set_broker_password(Path(path), f"{prefix}{i}", "pw")
        if i < len(drop):
            edit_broker_password(Path(path), drop[i], None)


def test_concurrent_adds_and_removals_in_two_processes_lose_nothing(tmp_path: Path) -> None:
    passwd = tmp_path / "mosquitto" / "passwd"
    old = [f"old{i}" for i in range(20)]
    for user in old:
        set_broker_password(passwd, user, "pw")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(passwd), prefix, 100, old[k::2]))
             for k, prefix in enumerate(("joined", "added"))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    users = sorted(ln.split(":", 1)[0] for ln in passwd.read_text().splitlines())
    assert users == sorted([f"joined{i}" for i in range(100)] + [f"added{i}" for i in range(100)])
    assert passwd.stat().st_mode & 0o777 == 0o600


def test_an_edit_that_changes_nothing_says_so_and_keeps_the_file(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    assert edit_broker_password(passwd, "a", password_line("a", "x")) is True
    before = passwd.read_bytes()
    assert edit_broker_password(passwd, "nobody", None) is False
    assert passwd.read_bytes() == before
    assert edit_broker_password(passwd, "a", None) is True and passwd.read_text() == ""
