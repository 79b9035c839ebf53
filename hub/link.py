"""The hub's MQTT connection: the only hub module that imports paho.

A persistent MQTT 5 session (events published while the hub is down wait at the broker,
on top of the sites' own outboxes), resubscription on every connect, and optionally an
MQTT 5 shared subscription (``$share/GROUP/...``) for events, so that several hub
processes split the ingest. Retained state (status, doors, occupancy) is subscribed
normally by every process: each needs all of it (MQTT 5 gives shared subscriptions no
retained messages; Mosquitto 2.0.11 does hand a new one those its ACL lets through).

The share group's name is secret (``share_group``: derived from a key every hub process
holds and no site has). Mosquitto 2.0 lets any client join any share group (its ACL file
is not consulted for SUBSCRIBE) and hands each member its turn of the group's messages,
checking the ACL only then: a site in the hub's group would swallow a share of every
site's events. A site cannot join a group it cannot name.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from wire import messages as m
from wire.errors import WireError
from wire.topics import ROOT, Kind, parse, shared, site_filter, topic

from .config import MqttSection, read_secret

log = logging.getLogger(__name__)

#: What the hub listens to, from every site.
INBOUND = (Kind.STATUS, Kind.EVENT, Kind.OCCUPANCY, Kind.DOOR, Kind.CACHE_ACK, Kind.COMMAND_ACK)

#: The share group of earlier versions, guessable by anyone: left on every connect.
LEGACY_SHARE_GROUP = "hub"


def share_group(secret: bytes) -> str:
    """The hub's share group name: ``hub-`` and 128 bits of HMAC-SHA256 keyed with
    ``secret`` (a secret in the hub's store, which every hub node reads and no site holds).
    The same for every process of one hub; not computable without the secret."""
    if len(secret) < 16:
        raise ValueError("the share group needs a secret of at least 16 bytes")
    return "hub-" + hmac.new(secret, b"torwart mqtt share group v1", hashlib.sha256).hexdigest()[:32]


def node_client_id(cfg: MqttSection, node: str) -> str:
    """The running hub's MQTT client id on node ``node``: ``[mqtt] client_id`` itself with
    one node (no shared subscription), ``{client_id}-{node}`` with several, so that nodes
    started from one config do not throw each other off the broker (a site may never have
    an id of that form: hub.config). Stable across restarts: the node's persistent session
    is resumed."""
    if not cfg.shared_subscription:
        return cfg.client_id
    return f"{cfg.client_id}-{node}"[:128]


class HubLinkSink(Protocol):
    """Called on paho's network thread: hand over and return."""

    def link_up(self) -> None: ...

    def site_message(self, site: str, kind: Kind, door: str | None, payload: bytes) -> None: ...


#: ``(topic, payload, retained)`` of a message on one of the link's request filters.
RequestHandler = Callable[[str, bytes, bool], None]


class HubLink:
    def __init__(self, cfg: MqttSection, sink: HubLinkSink | None, *, client_id: str | None = None,
                 persistent: bool = True, subscribe: tuple[Kind, ...] = INBOUND,
                 session_expiry: int = 7 * 86400, share_group: str | None = None,
                 requests: tuple[str, ...] = (), on_request: RequestHandler | None = None,
                 leave_groups: tuple[str, ...] = ()) -> None:
        """``share_group`` (see ``share_group()``) is required when ``cfg.shared_subscription``
        and events are subscribed. ``requests``: filters outside the sites' topics (Home
        Assistant's, hub/ha_control.py), shared like events, whose messages go to
        ``on_request(topic, payload, retained)`` on paho's network thread. ``leave_groups``:
        share groups an earlier version joined, left on every connect."""
        if cfg.shared_subscription and sink is not None and Kind.EVENT in subscribe and not share_group:
            raise ValueError("a shared subscription needs the hub's secret share group name")
        self.cfg = cfg
        self._share_group = share_group
        self._leave = tuple(g for g in (LEGACY_SHARE_GROUP, *leave_groups) if g != share_group)
        self._sink = sink
        self._subscribe = subscribe if sink is not None else ()
        self._requests = requests if on_request is not None else ()
        self._on_request = on_request
        self._persistent = persistent
        self._session_expiry = session_expiry if persistent else 0
        self._connected = threading.Event()
        self._closing = False
        self.refusal: str | None = None
        #: Sites revoked or removed (hub/core/fleet.py): ``publish`` and ``publish_command``
        #: send them nothing.
        self.blocked: frozenset[str] = frozenset()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or cfg.client_id,
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, read_secret(cfg.password_file) if cfg.password_file else None)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry
        self._client.connect_async(self.cfg.host, self.cfg.effective_port, keepalive=self.cfg.keepalive,
                                   clean_start=not self._persistent, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, site: str, kind: Kind, payload: bytes, *, retain: bool = False) -> bool:
        """Publish at QoS 1 to a site's topic; False when the link is down or the site is blocked."""
        if site in self.blocked:
            log.debug("site %s is revoked: %s not published", site, kind.value)
            return False
        return self.publish_topic(topic(site, kind), payload, retain=retain)

    def publish_topic(self, name: str, payload: bytes, *, retain: bool = False,
                      properties: Properties | None = None, wait: float = 0.0) -> bool:
        """Publish at QoS 1; with ``wait``, until the broker acknowledged it (at most that long)."""
        if not self.connected:
            return False
        info = self._client.publish(name, payload, qos=1, retain=retain, properties=properties)
        if wait and info.rc == mqtt.MQTT_ERR_SUCCESS:
            try:
                info.wait_for_publish(wait)
            except (RuntimeError, ValueError):
                return False
            return info.is_published()
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_command(self, site: str, cmd: m.Command, payload: bytes) -> bool:
        """Publish a signed command (``payload``, the envelope of ``cmd``) with an MQTT 5
        message expiry at the command's own ``expires_at``: sites keep persistent sessions,
        and the broker must not hand an offline site a command (a remote unlock) after the
        moment it was meant for. False when the link is down or the command has expired."""
        if site in self.blocked:
            log.warning("site %s is revoked: command %s not sent", site, cmd.id)
            return False
        ttl = int(cmd.expires_at - time.time())
        if ttl <= 0:
            log.warning("command %s for site %s expired before it was sent", cmd.id, site)
            return False
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = ttl
        return self.publish_topic(topic(site, Kind.COMMAND), payload, properties=props)

    def subscribe_site(self, site: str, kinds: tuple[Kind, ...]) -> None:
        """Extra subscriptions for one site (the CLI waits for that site's acks)."""
        for kind in kinds:
            self._client.subscribe(site_filter(kind, site), qos=1)

    # --- paho callbacks --------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self.refusal = str(rc)
            log.error("broker refused the hub's connection: %s", rc)
            return
        for kind in self._subscribe:
            f = site_filter(kind)
            if kind is Kind.EVENT and self.cfg.shared_subscription and self._share_group:
                # A session from an earlier version may still be in the guessable group.
                for group in self._leave:
                    client.unsubscribe(shared(f, group))
                f = shared(f, self._share_group)
            client.subscribe(f, qos=1)
        for f in self._requests:  # each request is carried out once, by one of the hub's nodes
            client.subscribe(shared(f, self._share_group) if self.cfg.shared_subscription and self._share_group
                             else f, qos=1)
        self._connected.set()
        log.info("connected to %s:%s (session %s)", self.cfg.host, self.cfg.effective_port,
                 "resumed" if getattr(flags, "session_present", False) else "new")
        if self._sink is not None:
            self._sink.link_up()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if self._connected.is_set():
            (log.info if self._closing else log.warning)("disconnected from the broker: %s", rc)
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_request is not None and not msg.topic.startswith(ROOT + "/"):
            self._on_request(msg.topic, bytes(msg.payload), bool(msg.retain))
            return
        if self._sink is None:
            return
        try:
            t = parse(msg.topic)
        except WireError as exc:
            log.warning("dropped a message on %r: %s", msg.topic, exc)
            return
        self._sink.site_message(t.site, t.kind, t.door, bytes(msg.payload))


def evict(cfg: MqttSection, client_id: str, *, delay: float = 0.0, timeout: float = 10.0) -> bool:
    """Throw the client ``client_id`` (a site: its client id is its login) off the broker and
    drop its session: connect under that id with a clean start and no session expiry, then
    leave. Mosquitto closes the older connection with the same id. This uses the hub's own
    login on its own listener, where client ids are not tied to the login. Waits ``delay``
    seconds first; whether the broker took the connection."""
    if delay:
        time.sleep(delay)
    done = threading.Event()
    ok: list[bool] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        ok.append(not rc.is_failure)
        done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    if cfg.username is not None:
        c.username_pw_set(cfg.username, read_secret(cfg.password_file) if cfg.password_file else None)
    if cfg.tls:
        c.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file,
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    try:
        c.connect(cfg.host, cfg.effective_port, keepalive=30, clean_start=True, properties=props)
    except OSError as exc:
        log.warning("cannot reach the broker to evict %s: %s", client_id, exc)
        return False
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.disconnect()
        c.loop_stop()
    return bool(ok and ok[0])
