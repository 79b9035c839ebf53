"""Sites' caches are rebuilt a batch at a time (``Hub.changed``,
``CacheManager.rebuild_batch``): a batch's versions are committed in one transaction and
only then published, each from the entries just built, which are the very caches the
store holds; a batch whose commit fails publishes nothing and the next run converges; a
crash between the commit and the publishing is made good when the hub comes back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from hub import config
from hub.caches import CacheManager
from hub.config import HubConfig
from hub.core import Hub
from hub.store import StoreError, open_store
from hub.store.sqlite import SqliteStore
from testkit.postgres import Postgres, fresh_store_url
from tests.hub._bookings import Bk
from tests.hub.test_alerts_alerter import ALTDORF
from tests.hub.test_hub_config import SITE, write_hub_config
from wire import envelope
from wire import messages as m
from wire.topics import Kind

SITES = ("altdorf", "minheim")


class RecordingLink:
    """A working stand-in for HubLink: connected, and it keeps what was published."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, Kind, bytes, bool]] = []

    def publish(self, site: str, kind: Kind, payload: bytes, *, retain: bool = False) -> bool:
        self.sent.append((site, kind, payload, retain))
        return True


class FlakyCommitStore(SqliteStore):
    """A real SQLite store whose next ``fail_commits`` outermost batches fail at their
    end (as a full disk fails a commit): the transaction is rolled back."""

    fail_commits = 0
    _depth = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._depth += 1
        try:
            with super().batch():
                yield
                if self._depth == 1 and self.fail_commits > 0:
                    self.fail_commits -= 1
                    raise StoreError("disk I/O error (the test's failing commit)")
        finally:
            self._depth -= 1


@pytest.fixture
def cfg(tmp_path: Path) -> HubConfig:
    return config.load(write_hub_config(tmp_path, SITE + ALTDORF))


@pytest.fixture
def store(cfg: HubConfig) -> Iterator[FlakyCommitStore]:
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True)
    s = FlakyCommitStore(cfg.hub.data_path / "hub.sqlite3")
    s.sync_sites(cfg.sites)
    yield s
    s.close()


def _book(store: FlakyCommitStore, n: int, *, start: int = 0) -> None:
    t = int(time.time())
    for i in range(start, start + n):
        store.add_member(f"m{i}", f"Member {i}")
        store.add_credential(f"m{i}", f"em4100:0A00B1{i:04X}")
    store.upsert_bookings([Bk(f"b{i}", "res-cowork" if i % 2 else "altdorf-res-cowork", f"m{i}", t + 3600,
                              t + 7200, updated_at=t) for i in range(start, start + n)])


def _fulls(link: RecordingLink, cfg: HubConfig) -> dict[str, m.CacheFull]:
    """Site → the cache.full published last, its signature and site checked."""
    keys = envelope.trusted_keys(config.signing_key(cfg).public_key())
    out = {}
    for site, kind, payload, retain in link.sent:
        assert kind is Kind.CACHE and retain
        body = envelope.open_body(payload, keys, site)
        assert isinstance(body, m.CacheFull)
        out[site] = body
    return out


def test_a_batch_is_published_from_what_it_committed(cfg: HubConfig, store: FlakyCommitStore) -> None:
    _book(store, 10)
    link = RecordingLink()
    hub = Hub(cfg, store, link=link)  # type: ignore[arg-type]
    built = hub.changed(SITES)
    assert set(built) == set(SITES)
    fulls = _fulls(link, cfg)
    assert set(fulls) == set(SITES) and len(link.sent) == 2
    fresh = CacheManager(store, cfg, config.signing_key(cfg))  # reads the store, nothing kept in memory
    for site in SITES:
        assert fulls[site] == fresh.full_body(site)  # the same cache, entry for entry
        assert len(fulls[site].entries) == 5
        state = store.cache_state(site)
        assert state is not None and state.version == built[site] == state.retained_version


def test_a_batch_whose_commit_fails_publishes_nothing_and_the_next_run_converges(
    cfg: HubConfig, store: FlakyCommitStore
) -> None:
    _book(store, 4)
    link = RecordingLink()
    hub = Hub(cfg, store, link=link)  # type: ignore[arg-type]
    first = hub.changed(SITES)
    link.sent.clear()
    _book(store, 6, start=4)
    store.fail_commits = 1
    assert hub.changed(SITES) == {}
    assert link.sent == []  # nothing of the failed batch went out
    for site in SITES:  # and nothing of it is recorded
        state = store.cache_state(site)
        assert state is not None and state.version == first[site] == state.retained_version
    again = hub.changed(SITES)  # the next run (the next sync, the periodic rebuild)
    assert set(again) == set(SITES) and all(again[s] > first[s] for s in SITES)
    fulls = _fulls(link, cfg)
    assert {s: len(fulls[s].entries) for s in SITES} == {"altdorf": 5, "minheim": 5}
    assert all(store.cache_state(s).retained_version == again[s] for s in SITES)  # type: ignore[union-attr]


def test_a_site_failing_in_a_batch_leaves_the_others_published(cfg: HubConfig, store: FlakyCommitStore) -> None:
    _book(store, 6)
    (Path(cfg.site("altdorf").cred_key_file)).unlink()  # its rebuild fails: no key to hash cards with
    link = RecordingLink()
    hub = Hub(cfg, store, link=link)  # type: ignore[arg-type]
    assert set(hub.changed(SITES)) == {"minheim"}
    assert [s for s, *_ in link.sent] == ["minheim"]
    assert store.cache_state("altdorf") is None


def test_versions_committed_but_never_published_go_out_when_the_hub_is_back(
    cfg: HubConfig, store: FlakyCommitStore
) -> None:
    _book(store, 6)
    crashed = Hub(cfg, store)  # committed its batch, then died before publishing
    built = crashed.caches.rebuild_batch(SITES, int(time.time()))
    assert set(built) == set(SITES)
    link = RecordingLink()
    back = Hub(cfg, store, link=link)  # type: ignore[arg-type]
    back.converge_all()
    fulls = _fulls(link, cfg)
    assert {s: f.version for s, f in fulls.items()} == built
    assert all(store.cache_state(s).retained_version == built[s] for s in SITES)  # type: ignore[union-attr]


def test_a_postgresql_connection_lost_mid_batch_records_nothing_and_logs_one_outage(
    cfg: HubConfig, postgres_server: Postgres, caplog: pytest.LogCaptureFixture,
) -> None:
    # The connection breaks after the first site's rebuild: the sites after it must not get
    # versions outside the batch (each connecting again and committing alone), nor a
    # traceback each; the batch records nothing and says so once, and the next run converges.
    url = fresh_store_url(postgres_server)
    with open_store(url) as pg:
        pg.sync_sites(cfg.sites)
        _book(pg, 6)  # type: ignore[arg-type]
        caches = CacheManager(pg, cfg, config.signing_key(cfg))
        real = CacheManager.rebuild

        def rebuild_then_cut(self: CacheManager, site: str, now: int) -> int | None:
            v = real(self, site, now)
            if site == SITES[0]:
                with psycopg.connect(url, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (pg._pg.info.backend_pid,))  # type: ignore[attr-defined]
            return v

        with caplog.at_level("INFO", logger="hub"):
            CacheManager.rebuild = rebuild_then_cut  # type: ignore[method-assign]
            try:
                assert caches.rebuild_batch(list(SITES), int(time.time())) == {}
            finally:
                CacheManager.rebuild = real  # type: ignore[method-assign]
        assert [pg.cache_state(s) for s in SITES] == [None, None]
        failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(failures) == 1 and "none of them is published" in failures[0].getMessage(), failures
        assert failures[0].exc_info is None  # an outage: one line, no traceback
        assert set(caches.rebuild_batch(list(SITES), int(time.time()))) == set(SITES)
