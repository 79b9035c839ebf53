"""The publisher brings sites to the latest cache version without flooding one that cannot
apply it: found by the chaos run, where a site with a full disk refused ("storage") every
cache and the hub answered each refusal, and each status, with a new one in a tight loop
(1,099 refusals in 13 seconds)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import config
from hub.caches import CacheManager
from hub.publisher import Publisher
from hub.store import open_store
from testkit.util import wait_for
from tests.hub.test_hub_config import write_hub_config
from wire.topics import Kind

SITE = "minheim"


class RecordingLink:
    """A working stand-in for HubLink: connected, and it remembers what was published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Kind, bool]] = []

    def publish(self, site: str, kind: Kind, payload: bytes, *, retain: bool = False) -> bool:
        self.sent.append((site, kind, retain))
        return True


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Publisher, RecordingLink, CacheManager]]:
    cfg = config.load(write_hub_config(tmp_path))
    store = open_store(cfg.hub.store_url)
    caches = CacheManager(store, cfg, config.signing_key(cfg))
    link = RecordingLink()
    pub = Publisher(caches, link, resend_seconds=0.5)  # type: ignore[arg-type]
    try:
        yield pub, link, caches
    finally:
        store.close()


def test_a_site_that_refuses_every_cache_is_not_flooded(rig: tuple[Publisher, RecordingLink, CacheManager]) -> None:
    pub, link, caches = rig
    caretakers(caches, 20)
    first = caches.rebuild(SITE, int(time.time()))
    pub.converge(SITE, None)
    second = caches.rebuild(SITE, int(time.time()) + 10, min_version=first or 0)
    assert first is not None and second is not None
    link.sent.clear()
    # The site holds `first` and refuses everything (its disk is full); after each refusal
    # it reports its status, as a site does. Without the hold-off every round sent two
    # caches (a full for the refusal, a delta for the status).
    for _ in range(50):
        pub.converge(SITE, first)
        pub.refused(SITE, "storage", first, second)
    assert len(link.sent) <= 3, link.sent
    assert pub.held_off >= 45
    # After resend_seconds it tries again (so a freed disk gets the cache).
    before = len(link.sent)
    wait_for(lambda: pub.converge(SITE, first) or len(link.sent) > before, 10, interval=0.05,
             what="the next attempt after the hold-off")


def caretakers(caches: CacheManager, n: int) -> None:
    """``n`` members with a card and a standing grant at the site (entries, so deltas exist)."""
    store = caches.store
    for i in range(n):
        store.add_member(f"c{i}", f"Caretaker {i}")
        store.add_credential(f"c{i}", f"em4100:0A00B1C2{i:02X}")
        store.add_grant(f"c{i}", SITE, None)


def test_a_full_on_its_way_is_not_followed_by_a_delta_for_the_same_version(
    rig: tuple[Publisher, RecordingLink, CacheManager],
) -> None:
    pub, link, caches = rig
    caretakers(caches, 20)
    first = caches.rebuild(SITE, int(time.time()))
    pub.converge(SITE, None)
    assert first is not None
    caches.store.add_member("c99", "One more")
    caches.store.add_credential("c99", "em4100:0A00B1C2FF")
    caches.store.add_grant("c99", SITE, None)
    second = caches.rebuild(SITE, int(time.time()) + 10)
    assert second is not None and caches.delta_body(SITE, first) is not None  # a delta would be possible
    link.sent.clear()
    pub.refused(SITE, "base_mismatch", first, second)  # answered at once with a full
    assert [k for _, k, _ in link.sent] == [Kind.CACHE]
    pub.converge(SITE, first)  # the site's status, sent before the full arrived
    assert [k for _, k, _ in link.sent] == [Kind.CACHE]


def test_a_first_refusal_is_answered_with_a_full_at_once(rig: tuple[Publisher, RecordingLink, CacheManager]) -> None:
    pub, link, caches = rig
    v = caches.rebuild(SITE, int(time.time()))
    pub.converge(SITE, None)
    link.sent.clear()
    pub.refused(SITE, "base_mismatch", None, v)
    assert link.sent == [(SITE, Kind.CACHE, True)]
    assert v is not None


@pytest.mark.parametrize("error", ["unknown_key", "bad_signature", "wrong_site", "malformed", "too_large"])
def test_a_refusal_of_an_envelope_the_site_could_not_open_is_not_answered_with_a_full(
    rig: tuple[Publisher, RecordingLink, CacheManager], error: str
) -> None:
    # Anyone who can publish on a site's cache topic (a forger, a confused tool) would
    # otherwise make the hub sign and send a full cache for every message.
    pub, link, caches = rig
    caretakers(caches, 3)
    v = caches.rebuild(SITE, int(time.time()))
    pub.converge(SITE, None)
    link.sent.clear()
    for _ in range(5):
        pub.refused(SITE, error, v, None)
    assert link.sent == []
