"""A site reduced to its cache, for tests with many sites: the edge's own verify-and-apply
(``edge.trust.apply_envelope``, the code the agent's cache worker runs) on its own cache
database, over MQTT as PROTOCOL.md says -- it takes ``cache`` and ``cache/delta``, answers
``cache/ack`` and keeps a retained ``status`` with the version it holds (and the Last Will).
It has no doors, readers, outbox or clock: one paho client and one thread, so that ten of
them cost less than one agent process.

Every answer it gave is kept in ``acks`` (version, error), so a test can assert that a site
never refused a valid cache.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from edge.cache import CacheStore
from edge.trust import Trust, apply_envelope
from wire import messages as m
from wire.topics import Kind, topic

from .mqttclient import Message, TestClient


class ProtocolSite:
    """Site ``site`` with its cache database in ``data_dir``, trusting ``config_key`` (its
    ``[hub] signing_public_key``) until a verified cache names other keys."""

    def __init__(self, site: str, data_dir: Path, host: str, port: int, config_key: str) -> None:
        self.site = site
        self.path = data_dir / "cache.db"
        self.config_key = config_key
        self.acks: list[tuple[int | None, str | None]] = []
        self.trust: Trust | None = None
        self._host, self._port = host, port
        self._client: TestClient | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()

    def start(self) -> ProtocolSite:
        self._stop.clear()
        self._ready.clear()
        c = TestClient(self._host, self._port, client_id=f"light-{self.site}")
        c.c.will_set(topic(self.site, Kind.STATUS), m.encode(m.Status(state="offline")), qos=1, retain=True)
        self._client = c
        self._thread = threading.Thread(target=self._run, name=f"site-{self.site}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"site {self.site} did not start")
        c.subscribe(topic(self.site, Kind.CACHE))
        c.subscribe(topic(self.site, Kind.CACHE_DELTA))
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._client is not None:
            self._client.close()

    def kids(self) -> list[str]:
        """The kids of the keys this site trusts now."""
        return [] if self.trust is None else self.trust.kids()

    @property
    def version(self) -> int | None:
        with CacheStore(self.path, read_only=True) as store:
            return store.version

    def _run(self) -> None:
        store = CacheStore(self.path)
        try:
            self.trust = Trust.of(self.config_key, store)
            self._status(store)
            self._ready.set()
            c = self._client
            assert c is not None
            while not self._stop.is_set():
                try:
                    msg = c.messages.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._handle(store, msg)
        finally:
            store.close()

    def _handle(self, store: CacheStore, msg: Message) -> None:
        kind = Kind.CACHE if msg.topic.endswith("/cache") else Kind.CACHE_DELTA
        version, error = apply_envelope(store, self.trust or Trust(self.config_key), self.site, kind, [msg.payload],
                                        limit=16 * 1024 * 1024)
        self.acks.append((version, error))
        assert self._client is not None
        ack = m.CacheAck(version=version, ok=error is None, error=error, ts=time.time())
        self._client.c.publish(topic(self.site, Kind.CACHE_ACK), m.encode(ack), qos=1)
        self._status(store)

    def _status(self, store: CacheStore) -> None:
        meta = store.meta()
        st = m.Status(state="online", ts=time.time(), boot="light", software="keysite",
                      cache_version=meta.version, cache_expires_at=meta.expires_at, clock_synced=True,
                      keys=self.kids())
        assert self._client is not None
        self._client.c.publish(topic(self.site, Kind.STATUS), m.encode(st), qos=1, retain=True)
