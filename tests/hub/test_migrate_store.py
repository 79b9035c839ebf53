"""``torwart-hub migrate-store``: a county's SQLite store copied into an empty PostgreSQL
database on a real server, verified, after which the hub's commands run on PostgreSQL with
the data as it was; and every refusal (a running hub, a non-empty target, a bad URL, an
unreachable server, a store that is not SQLite) changes nothing."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import psycopg
import pytest

from hub import runlock
from hub.store import (
    AlertPrefs,
    AuditEntry,
    EventBatch,
    IncomingEvent,
    NodeInfo,
    Quarantined,
    SigningKeyRow,
    StoredEvent,
    open_store,
)
from hub.store.alerts import OutMail
from hub.store.fleet import JoinCode, SiteCert
from testkit.booking_fake import BookingPlatform
from testkit.postgres import Postgres
from tests.hub.store_contract import events
from tests.hub.test_hub_cli import CARD, FOB, Capsys, run
from tests.hub.test_hub_cli import cfg_path as cfg_path  # noqa: PLC0414 (the fixture)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def target(postgres_server: Postgres) -> str:
    """An empty database (no tables) on the session's server; its URL without password."""
    return postgres_server.url(postgres_server.fresh_db(prefix="migrate"))


@pytest.fixture
def password_file(postgres_server: Postgres, tmp_path: Path) -> Path:
    p = tmp_path / "secrets" / "db.password"
    p.parent.mkdir(exist_ok=True)
    p.write_text(postgres_server.password + "\n")
    p.chmod(0o600)
    return p


def _filled(cfg_path: Path, booking_platform: BookingPlatform, capsys: Capsys) -> Path:
    """The CLI's county with members, cards, a grant, bookings, caches, events of two
    streams, a quarantined message, an alert with mail and a login failure; and a row or
    more in every table of the later migrations: the alert acknowledged, reminded (by
    webhook) and its user's settings, the audit trail, a Web Push subscription, the signing
    keys and a site's rollout, a join code, certificates (one revoked), a site's state, a
    node, the leader's lease and the change feed."""
    c = str(cfg_path)
    assert run(capsys, "cards", "add", "m1", CARD, "--config", c, "--name", "Ada")[0] == 0
    assert run(capsys, "cards", "add", "m2", FOB, "--config", c, "--name", "Bo")[0] == 0
    assert run(capsys, "grants", "add", "m2", "minheim", "--config", c, "--label", "caretaker")[0] == 0
    t = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for i in range(30):
        booking_platform.add(f"b{i}", "res-cowork", "m1", t + dt.timedelta(hours=i), t + dt.timedelta(hours=i + 1))
    assert run(capsys, "sync", "--config", c)[0] == 0
    with open_store(str(cfg_path.parent / "data" / "hub.sqlite3")) as s:
        s.store_events("minheim", events(list(range(1, 120))))
        s.store_batch("minheim", EventBatch(
            events=[IncomingEvent("s2", *ev) for ev in events([1, 2, 5])],
            quarantined=[Quarantined(why="not json", payload=b"\xff\x00garbage", stream="s2", seq=3)]))
        aid = s.open_alert("minheim", "door_forced", "main", at=1.5, detail="forced",
                           mails=[OutMail(recipient="admin@example.org", subject="forced", body="x")])
        assert aid is not None
        s.reserve_login_attempt([("ip:127.0.0.1", 5)], at=2.0, window=60)
        s.add_user("anna", "admin", None, "$argon2id$not-a-real-hash", email="anna@example.org")
        s.set_alert_prefs(AlertPrefs(user="anna", lang="en", kinds=("door_forced",), channels=("email", "push"),
                                     quiet_start=1320, quiet_end=420), now=3.0)
        assert s.remind_alert(aid, number=1, at=3.5, mails=[
            OutMail(recipient="https://example.org/hook", subject="reminder", body="{}", channel="webhook")])
        assert s.ack_alert(aid, by="anna", at=4.0) is not None
        s.record_audit(AuditEntry(at=4.0, who="anna", via="dashboard", act="alerts.ack", outcome="ok",
                                  site_id="minheim", detail=f"alert={aid}"))
        s.record_audit(AuditEntry(at=4.5, who="cli:root", via="cli", act="users.add", outcome="refused",
                                  reason="exists"))
        s.add_push_subscription("anna", "https://push.example.org/e1", "p256dh-key", "auth-key", now=5.0)
        s.change_signing_keys({}, [SigningKeyRow(kid="k1", public_key="pk1", state="signing", created_at=6.0,
                                                 changed_at=6.0),
                                   SigningKeyRow(kid="k2", public_key="pk2", state="next", created_at=6.5,
                                                 changed_at=6.5)])
        s.set_key_rollout("minheim", ["k1", "k2"], 3, ["k1"], at=7.0)
        s.add_join_code(JoinCode(id="jc1", site_id="minheim", secret_hash="h", created_at=8.0, expires_at=9e9,
                                 broker_host="broker.example.org", broker_port=8883, tls=True))
        s.add_site_cert(SiteCert(serial="1234567890123456789012345", site_id="minheim", issued_at=8.0,
                                 not_after=9e9, how="join"))
        s.add_site_cert(SiteCert(serial="42", site_id="minheim", issued_at=7.0, not_after=9e9, how="bundle"))
        assert s.revoke_site_certs("minheim", at=8.5) >= 2  # with the bundle's the CLI's county made
        s.add_site_cert(SiteCert(serial="43", site_id="minheim", issued_at=8.6, not_after=9e9, how="renew"))
        s.set_site_state("minheim", "active", at=8.6)
        s.heartbeat_node(NodeInfo(id="node-a", host="hub1", pid=4242, version="1.0", started_at=9.0,
                                  role="leader", instance="i-1"), now=9.5)
        assert s.try_lease("node-a", now=9.5, seconds=15).holder == "node-a"
        assert s.record_changes("node-a", [("minheim", "doors"), ("minheim", "events")], at=9.5) > 0
    return cfg_path


def _use_database(cfg_path: Path, url: str, password_file: Path) -> None:
    """hub.toml changed as migrate-store says: the store is that PostgreSQL database."""
    line = f'database = "{url}"\ndatabase_password_file = "{password_file}"\n'
    cfg_path.write_text(cfg_path.read_text().replace('data_dir = "data"\n', f'data_dir = "data"\n{line}', 1))


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # type: ignore[index]


def test_a_county_moves_to_postgresql_verified_and_the_hub_runs_on_it(
    cfg_path: Path, booking_platform: BookingPlatform, capsys: Capsys, postgres_server: Postgres,
    target: str, password_file: Path,
) -> None:
    _filled(cfg_path, booking_platform, capsys)
    c = str(cfg_path)
    sqlite_file = cfg_path.parent / "data" / "hub.sqlite3"
    before = sqlite_file.read_bytes()
    code, out, err = run(capsys, "migrate-store", "--to", target, "--password-file", str(password_file), "--config", c)
    assert code == 0, err
    assert "bookings: 30 rows copied" in out and "bookings: 30 rows verified" in out
    assert "events: 122 rows verified" in out and "copied and verified" in out
    for table, n in (("alert_prefs", 1), ("alert_mails", 2), ("push_subscriptions", 1),
                     ("signing_keys", 2), ("key_rollouts", 1), ("join_codes", 1),
                     ("site_lifecycle", 1), ("nodes", 1), ("leader_lease", 1), ("changes", 2)):
        assert f"{table}: {n} rows verified" in out, table
    for table in ("audit", "site_certs"):  # with rows of the CLI's own acts
        assert re.search(rf"\b{table}: [1-9][0-9]* rows verified", out), table
    assert f'database = "{target}"' in out and f'database_password_file = "{password_file}"' in out
    assert postgres_server.password not in out + err
    assert sqlite_file.read_bytes() == before  # the source is left as it was

    pg_url = f"{postgres_server.url(target.rsplit('/', 1)[1], password=True)}"
    with open_store(str(sqlite_file)) as old, open_store(pg_url) as new:
        assert new.sites() == old.sites() and new.members() == old.members()
        assert new.hub_secret("who") == old.hub_secret("who")  # pseudonyms stay the same
        for m in old.members():
            assert new.credentials_of(m.id) == old.credentials_of(m.id)
            assert new.grants_of(m.id) == old.grants_of(m.id)
            assert new.member_bookings(m.id) == old.member_bookings(m.id)
        def key(e: StoredEvent) -> tuple[str, int]:
            return e.stream, e.seq  # ties of (ts, seq) in two streams come in either order

        assert sorted(new.events(site_id="minheim", limit=500), key=key) == \
            sorted(old.events(site_id="minheim", limit=500), key=key)
        assert new.event_streams("minheim") == old.event_streams("minheim")
        assert new.quarantine("minheim") == old.quarantine("minheim")
        assert new.cache_snapshot("minheim") == old.cache_snapshot("minheim")
        assert new.open_alerts() == old.open_alerts() and new.alert_mails() == old.alert_mails()
        assert new.recent_login_failures("ip:127.0.0.1", since=0, limit=9) == [2.0]
        assert new.alerts() == old.alerts() and new.alerts()[0].acked_by == "anna"
        assert new.alert_prefs() == old.alert_prefs() and new.alert_prefs()["anna"].quiet_start == 1320
        assert new.claim_alert_mails(10.0, lease=60, channel="webhook") == \
            old.claim_alert_mails(10.0, lease=60, channel="webhook") != []
        assert new.audit_log() == old.audit_log()
        assert {("alerts.ack", "ok"), ("users.add", "refused")} <= {(r.act, r.outcome) for r in new.audit_log()}
        assert new.push_subscriptions() == old.push_subscriptions() and len(new.push_subscriptions()) == 1
        assert new.signing_keys() == old.signing_keys() and len(new.signing_keys()) == 2
        assert new.key_rollouts() == old.key_rollouts() and len(new.key_rollouts()) == 1
        assert new.join_code("jc1") == old.join_code("jc1") is not None
        assert new.site_certs() == old.site_certs()
        assert {"1234567890123456789012345", "42", "43"} <= {c.serial for c in new.site_certs()}
        assert new.revoked_certs(valid_at=10.0) == old.revoked_certs(valid_at=10.0)
        assert {"1234567890123456789012345", "42"} <= {c.serial for c in new.revoked_certs(valid_at=10.0)}
        assert "43" not in {c.serial for c in new.revoked_certs(valid_at=10.0)}
        assert new.site_lifecycle() == old.site_lifecycle() == {"minheim": ("active", 8.6)}
        assert new.nodes() == old.nodes() and new.lease() == old.lease() and new.lease() is not None
        assert new.changes_since(0) == old.changes_since(0) and len(new.changes_since(0)) == 2
        # Ids go on after the copied ones; the streams go on where they were.
        cred = new.add_credential("m1", "em4100:7E00A1B2C4")
        assert cred.id > max(x.id for m in old.members() for x in old.credentials_of(m.id))
        assert new.store_events("minheim", events([120])).acked_upto == 120
        assert new.record_audit(AuditEntry(at=11.0, who="anna", via="api", act="unlock", outcome="ok")) > \
            max(r.id for r in old.audit_log())
        assert new.record_changes("node-a", [("minheim", "doors")], at=11.0) > old.last_change()
        assert new.add_push_subscription("anna", "https://push.example.org/e2", "p", "a", now=11.0).id > \
            max(p.id for p in old.push_subscriptions())

    # The hub.toml change the command printed: the CLI now works on PostgreSQL.
    _use_database(cfg_path, target, password_file)
    code, out, err = run(capsys, "cards", "list", "--config", c)
    assert code == 0, err
    assert "m1" in out and "m2" in out and "Ada" in out
    sqlite_file.unlink()  # it is not used any more
    assert run(capsys, "cards", "list", "--config", c)[0] == 0 and not sqlite_file.exists()


def test_a_non_empty_target_is_refused_and_left_as_it_was(
    cfg_path: Path, booking_platform: BookingPlatform, capsys: Capsys, postgres_server: Postgres,
    target: str, password_file: Path,
) -> None:
    _filled(cfg_path, booking_platform, capsys)
    args = ["migrate-store", "--to", target, "--password-file", str(password_file), "--config", str(cfg_path)]
    assert run(capsys, *args)[0] == 0
    full = postgres_server.url(target.rsplit("/", 1)[1], password=True)
    counts = _counts(full)
    code, _, err = run(capsys, *args)
    assert code == 1 and "is not empty" in err and "migrate-store copies into an empty database only" in err
    assert _counts(full) == counts


def test_a_running_hub_is_refused_and_nothing_is_written(
    cfg_path: Path, booking_platform: BookingPlatform, capsys: Capsys, postgres_server: Postgres,
    target: str, password_file: Path,
) -> None:
    with runlock.running(cfg_path.parent / "data"):  # what `torwart-hub run` holds
        code, _, err = run(capsys, "migrate-store", "--to", target, "--password-file", str(password_file),
                           "--config", str(cfg_path))
    assert code == 1 and "a hub is running" in err and "systemctl stop torwart-hub" in err
    assert _counts(postgres_server.url(target.rsplit("/", 1)[1], password=True)) == {}  # no table made
    with (runlock.exclusive(cfg_path.parent / "data"),
          pytest.raises(runlock.HubRunning, match="being restored or migrated"),
          runlock.running(cfg_path.parent / "data")):
        pass


@pytest.mark.parametrize(("to", "why"), [
    ("postgresql://torwart@127.0.0.1:5432/", "names no database"),
    ("sqlite:///tmp/other.sqlite3", "--to must be a postgresql:// URL"),
    ("postgresql://torwart:s3cret@127.0.0.1:{closed}/hub", "cannot connect to the PostgreSQL store"),
])
def test_a_bad_or_unreachable_target_is_a_clear_error(cfg_path: Path, capsys: Capsys, postgres_server: Postgres,
                                                       to: str, why: str) -> None:
    closed = postgres_server.port + 1 if postgres_server.port < 65535 else postgres_server.port - 1
    code, out, err = run(capsys, "migrate-store", "--to", to.format(closed=closed), "--config", str(cfg_path))
    assert code == 1 and why in err and "s3cret" not in out + err


def test_a_store_that_is_not_sqlite_has_nothing_to_migrate(
    cfg_path: Path, capsys: Capsys, postgres_server: Postgres, target: str, password_file: Path,
) -> None:
    _use_database(cfg_path, target, password_file)
    code, _, err = run(capsys, "migrate-store", "--to", target, "--config", str(cfg_path))
    assert code == 1 and "not SQLite: nothing to migrate" in err


def test_the_tables_checksum_sees_any_changed_value_but_not_the_row_order() -> None:
    from hub.store.copy import _summary

    rows = [[1, "a", 1.5, b"\x00", None], [2, "b", 2.5, b"\x01", "x"], [3, "c", 3.0, b"", None]]
    base = _summary(iter(rows))
    assert base[0] == 3
    assert _summary(iter(rows[::-1])) == base
    for i, j, other in ((0, 1, "A"), (1, 2, 2.5000001), (2, 0, 3.0), (0, 3, b"\x02"), (1, 4, None)):
        changed = [list(r) for r in rows]
        changed[i][j] = other
        assert _summary(iter(changed))[1] != base[1], (i, j, other)  # 3.0 for the int 3: a type change too
    assert _summary(iter(rows[:2]))[0] == 2
