"""Lightweight simulated sites: many sites speaking PROTOCOL.md in one process, for the
scale benchmark (scripts/bench_scale) and its test. Not agents: no readers, doors, SQLite
or outbox on disk; only what the hub sees of a site on the wire, done as the agent does it.

Each ``SimSite`` is one paho client with the site's own client id and login
(``torwart-site-{id}``, user = site id), MQTT 5, the retained offline status as its Last
Will, a session never started clean and kept (``session_expiry``), retain handling 1 on
every connect, ``cache`` taken anew when a resumed session finds no cache (edge/link.py). It

- publishes its retained ``status`` (online, the version it holds) on every connect and
  after every cache it handled (edge/agent.py);
- takes ``cache`` (full) and ``cache/delta``: the signature is verified with the hub's
  public key before anything is parsed (wire.envelope), the body must be for this site,
  a version at or below the held one is ``stale_version``, a delta whose base is not the
  held version is ``base_mismatch`` (that refusal is how a site asks for a full: the hub
  answers it with one); a full replaces the held entry ids, a delta upserts then removes
  (edge/cache.py). Every envelope is answered on ``cache/ack`` and reported as a
  ``cache.applied`` / ``cache.rejected`` event, as the agent does;
- publishes events on its own stream (seq 1, 2, ...), keeps them until ``event/ack``
  covers them and sends the unacknowledged ones again after every reconnect;
- reconnects as paho's loop does for the agent: 1 s after the loss, doubling up to 30 s,
  no jitter (a thundering herd after a broker restart is what real sites do too).

A site "holds version V" only once it verified V's signature and applied it.

Thousands of clients with a thread each are too heavy, so a ``SiteLoop`` drives a few
hundred clients with paho's external-loop API (``on_socket_open``/``close``/
``register_write``, ``loop_read``/``loop_write``/``loop_misc``) in one selector loop;
``testkit.scale_fleet`` runs several loops in processes of their own.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import secrets
import selectors
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from wire import envelope
from wire import messages as m
from wire.errors import BASE_MISMATCH, MALFORMED, STALE_VERSION, WireError
from wire.events import AccessDenied, CacheApplied, CacheRejected
from wire.keys import public_key_from_b64
from wire.topics import SITE_READS, Kind, topic

log = logging.getLogger(__name__)

SOFTWARE = "scale-sim"


@dataclass(frozen=True)
class SiteLogin:
    """A site's id and its broker password (None: an anonymous broker)."""

    site: str
    password: str | None = None


@dataclass(frozen=True)
class SimConfig:
    """What every simulated site shares (picklable: it crosses into the worker processes)."""

    host: str
    port: int
    #: The hub's Ed25519 public key, standard base64 of the raw 32 bytes (site.toml's
    #: ``signing_public_key``).
    hub_public_key: str
    keepalive: int = 30
    session_expiry: int = 86400
    min_backoff: float = 1.0
    max_backoff: float = 30.0
    limit: int = envelope.DEFAULT_LIMIT


@dataclass(slots=True)
class SiteReport:
    """One site's state as the benchmark reads it (times are Unix seconds, 0.0: never)."""

    site: str
    connected: bool = False
    connects: int = 0
    #: Connection attempts refused or failed (broker down, login refused).
    connect_failures: int = 0
    connected_at: float = 0.0  # the last CONNACK; session_present: the broker had kept the session
    session_present: bool = False
    version: int | None = None
    entries: int = 0
    #: When the held version was applied, and when the message that carried it arrived.
    applied_at: float = 0.0
    received_at: float = 0.0
    fulls: int = 0  # envelopes received on ``cache`` and ``cache/delta``; ``verified``: signatures that held
    deltas: int = 0
    #: Of ``fulls``: those the broker delivered as retained (a new subscription), not
    #: published by the hub to a subscription the site held.
    fulls_retained: int = 0
    verified: int = 0
    applied_fulls: int = 0
    applied_deltas: int = 0
    #: Refusals sent on ``cache/ack``, by error code.
    refused: dict[str, int] = field(default_factory=dict)
    stream: str = ""
    #: The last seq emitted on ``stream`` and the highest ``upto`` the hub acknowledged.
    seq: int = 0
    acked: int = 0
    all_acked_at: float = 0.0  # when ``acked`` reached ``seq`` (0.0: events are outstanding)


def raise_fd_limit(want: int) -> int:
    """Raise this process's open-file limit to ``want`` (at most the hard limit); the new
    soft limit. Children (Mosquitto, the site loops) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class SimSite:
    """One simulated site (see the module's docstring); driven by a ``SiteLoop``."""

    def __init__(self, login: SiteLogin, cfg: SimConfig, keys: dict[str, Any], loop: SiteLoop) -> None:
        self.cfg = cfg
        self.keys = keys
        self.loop = loop
        self.r = SiteReport(site=login.site, stream=secrets.token_hex(16))
        self.boot = uuid.uuid4().hex[:12]
        self.ids: set[str] = set()
        self.pending: dict[int, bytes] = {}
        self.started = False
        self.next_try = 0.0
        self._delay: float | None = None
        self._status_topic = topic(login.site, Kind.STATUS)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"torwart-site-{login.site}",
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.username_pw_set(login.site, login.password)
        c.will_set(self._status_topic, self._status(online=False), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_open = loop.socket_open
        c.on_socket_close = loop.socket_close
        c.on_socket_register_write = loop.register_write
        c.on_socket_unregister_write = loop.unregister_write
        c.user_data_set(self)
        self.client = c

    # --- connection ------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """One connection attempt (never clean: the broker's session is resumed when it has one)."""
        try:
            if not self.started:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self.cfg.session_expiry
                self.started = True
                self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive,
                                    clean_start=False, properties=props)
            else:
                self.client.reconnect()
        except (TimeoutError, OSError):
            self.r.connect_failures += 1
            self._backoff(now)

    def _backoff(self, now: float) -> None:
        # paho's loop: wait first, min_backoff after a loss, doubling up to max_backoff.
        self._delay = self.cfg.min_backoff if self._delay is None else min(self._delay * 2, self.cfg.max_backoff)
        self.next_try = now + self._delay

    @property
    def due(self) -> bool:
        return not self.r.connected and self.client.socket() is None and time.monotonic() >= self.next_try

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self.r.connect_failures += 1
            log.warning("site %s: broker refused the connection: %s", self.r.site, rc)
            return
        self._delay = None
        self.r.connected, self.r.connects = True, self.r.connects + 1
        self.r.connected_at, self.r.session_present = time.time(), bool(flags.session_present)
        if flags.session_present and (self.r.connects == 1 or self.r.version is None):
            client.unsubscribe(topic(self.r.site, Kind.CACHE))  # as edge/link.py: the retained full anew
        client.subscribe([(topic(self.r.site, k), SubscribeOptions(qos=1, retainHandling=1)) for k in SITE_READS])
        self.publish_status()
        for seq in sorted(self.pending):  # the outbox: whatever the hub has not acknowledged
            self._publish(Kind.EVENT, self.pending[seq])

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        was = self.r.connected
        self.r.connected = False
        if not self.loop.stopping:
            self._backoff(time.monotonic())
            if was:
                log.debug("site %s: disconnected (%s)", self.r.site, rc)

    # --- publishing --------------------------------------------------------------------------

    def _publish(self, kind: Kind, payload: bytes, *, retain: bool = False) -> None:
        if self.r.connected:
            self.client.publish(topic(self.r.site, kind), payload, qos=1, retain=retain)

    def _status(self, *, online: bool) -> bytes:
        return m.encode(m.Status(state="online" if online else "offline", ts=time.time(), boot=self.boot,
                                 software=SOFTWARE, cache_version=self.r.version, clock_synced=True,
                                 outbox_pending=len(self.pending), stream=self.r.stream))

    def publish_status(self, *, online: bool = True) -> None:
        self._publish(Kind.STATUS, self._status(online=online), retain=True)

    def emit(self, ev: Any) -> None:
        """Put an event (with ``stream`` and ``seq`` filled in here) into the outbox and send it."""
        payload = m.encode(ev)
        self.pending[ev.seq] = payload
        self.r.all_acked_at = 0.0
        self._publish(Kind.EVENT, payload)

    def _next(self) -> dict[str, Any]:
        self.r.seq += 1
        return {"id": uuid.uuid4().hex, "site": self.r.site, "stream": self.r.stream, "seq": self.r.seq,
                "boot": self.boot, "ts": time.time(), "clock_synced": True}

    def badge(self) -> None:
        """An unknown card at the entrance: one ``access.denied`` event."""
        self.emit(AccessDenied(**self._next(), door="eingang", cred="0" * 32, reason="unknown_credential",
                               cache_version=self.r.version))

    # --- receiving ---------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        prefix = topic(self.r.site, Kind.STATUS)[: -len(Kind.STATUS.value)]
        if not msg.topic.startswith(prefix):
            log.warning("site %s: message on %r is not for this site; dropped", self.r.site, msg.topic)
            return
        kind = msg.topic[len(prefix):]
        if kind == Kind.CACHE.value:
            self.r.fulls_retained += bool(msg.retain)
            self._cache(Kind.CACHE, bytes(msg.payload))
        elif kind == Kind.CACHE_DELTA.value:
            self._cache(Kind.CACHE_DELTA, bytes(msg.payload))
        elif kind == Kind.EVENT_ACK.value:
            self._event_ack(bytes(msg.payload))

    def _event_ack(self, payload: bytes) -> None:
        try:
            ack = m.decode(payload, m.EventAck)
        except WireError:
            log.warning("site %s: malformed event ack dropped", self.r.site)
            return
        if ack.stream != self.r.stream or ack.upto <= self.r.acked:
            return
        self.r.acked = min(ack.upto, self.r.seq)
        for seq in [s for s in self.pending if s <= ack.upto]:
            del self.pending[seq]
        if not self.pending and self.r.acked == self.r.seq:
            self.r.all_acked_at = time.time()

    def _cache(self, kind: Kind, payload: bytes) -> None:
        received = time.time()
        if kind is Kind.CACHE:
            self.r.fulls += 1
        else:
            self.r.deltas += 1
        version: int | None = None
        try:
            verified = envelope.open_envelope(payload, self.keys, limit=self.cfg.limit)
            self.r.verified += 1
            body = envelope.decode_body(verified, self.r.site)
            want = m.CacheFull if kind is Kind.CACHE else m.CacheDelta
            if not isinstance(body, want):
                raise WireError(MALFORMED, f"a {body.__struct_config__.tag} arrived on the {kind} topic")
            version = body.version
            self._apply(body)
            self.r.applied_at, self.r.received_at = time.time(), received
            error = None
        except WireError as exc:
            error = exc.code
            self.r.refused[error] = self.r.refused.get(error, 0) + 1
            log.debug("site %s: cache refused (%s): %s", self.r.site, exc.code, exc)
        self._publish(Kind.CACHE_ACK, m.encode(m.CacheAck(version=version, ok=error is None, error=error,
                                                          ts=time.time())))
        if error is None:
            self.emit(CacheApplied(**self._next(), version=version, error=None))
        else:
            self.emit(CacheRejected(**self._next(), version=version, error=error))
        self.publish_status()

    def _apply(self, body: m.CacheFull | m.CacheDelta) -> None:
        held = self.r.version
        # As edge/cache.py: stale first (a late or repeated delta needs no full), then the base.
        if held is not None and body.version <= held:
            raise WireError(STALE_VERSION, f"version {body.version} is not after the applied version {held}")
        if isinstance(body, m.CacheDelta):
            if body.base_version != held:
                raise WireError(BASE_MISMATCH, f"delta is based on version {body.base_version}, the site has {held}")
            self.ids.update(e.id for e in body.upsert)
            self.ids.difference_update(body.remove)
            self.r.applied_deltas += 1
        else:
            ids = {e.id for e in body.entries}
            if len(ids) != len(body.entries):
                raise WireError(MALFORMED, "an entry id appears twice in the cache")
            self.ids = ids
            self.r.applied_fulls += 1
        self.r.version, self.r.entries = body.version, len(self.ids)


class SiteLoop:
    """A few hundred ``SimSite`` clients in one selector loop (one thread). ``poll`` does
    one round of network work; ``run_until`` repeats it."""

    #: Connection attempts per round: hundreds of sites dialling do not stall the reads.
    DIALS_PER_ROUND = 50

    def __init__(self, cfg: SimConfig, logins: list[SiteLogin]) -> None:
        raise_fd_limit(4 * len(logins) + 256)
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        keys = envelope.trusted_keys(public_key_from_b64(cfg.hub_public_key))
        self.sites = [SimSite(lg, cfg, keys, self) for lg in logins]
        self._misc_at = 0.0

    # paho's external-loop callbacks: the selector follows each client's socket.
    def socket_open(self, client: mqtt.Client, site: SimSite, sock: Any) -> None:
        self.sel.register(sock, selectors.EVENT_READ, site)

    def socket_close(self, client: mqtt.Client, site: SimSite, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)

    def register_write(self, client: mqtt.Client, site: SimSite, sock: Any) -> None:
        self.sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, site)

    def unregister_write(self, client: mqtt.Client, site: SimSite, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(sock, selectors.EVENT_READ, site)

    def poll(self, timeout: float) -> None:
        for key, mask in self.sel.select(timeout):
            if not isinstance(key.data, SimSite):
                continue
            c = key.data.client
            if mask & selectors.EVENT_READ:
                c.loop_read()
            if mask & selectors.EVENT_WRITE and c.socket() is not None:
                c.loop_write()
        now = time.monotonic()
        if now - self._misc_at >= 0.25:
            self._misc_at = now
            dials = 0
            for s in self.sites:
                if s.client.socket() is not None:
                    s.client.loop_misc()  # keepalive: PINGREQ, or a dead connection noticed
                elif not self.stopping and dials < self.DIALS_PER_ROUND and s.due:
                    dials += 1
                    s.connect(now)
            if dials:
                self._misc_at = 0.0  # more to dial: come back next round

    def selector_register(self, fileobj: Any) -> None:
        """Wake ``poll`` when ``fileobj`` is readable (a control pipe)."""
        self.sel.register(fileobj, selectors.EVENT_READ, None)

    def flush(self, timeout: float) -> None:
        """Run rounds until every client has written what it queued (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(s.client.want_write() for s in self.sites):
            self.poll(0.05)

    def stop(self, *, goodbye: bool = True, timeout: float = 10.0) -> None:
        """As the agent stops: the retained offline status, then a clean disconnect."""
        if goodbye:
            for s in self.sites:
                s.publish_status(online=False)
            self.flush(timeout)
        self.stopping = True
        for s in self.sites:
            if s.client.socket() is not None:
                s.client.disconnect()
        self.flush(timeout)
        for s in self.sites:
            if s.client.socket() is not None:
                self.socket_close(s.client, s, s.client.socket())
        self.sel.close()

    def reports(self) -> list[SiteReport]:
        return [s.r for s in self.sites]
