"""The site's MQTT link to the hub: the only edge module that imports paho.

MQTT 5, username/password and/or a client certificate over TLS, the Last Will
``{"state":"offline"}`` retained on ``status``, resubscription on every connect, and
reconnection with backoff (paho's own loop). Everything received is handed to a
``LinkSink`` (the agent's queue); nothing is decided here.

The session: never started clean (``clean_start`` 0), kept for ``session_expiry`` seconds
across reconnects, process restarts and broker restarts (Mosquitto restores after a restart
only the sessions that were not started clean). The subscriptions ask for retained
messages only when they are new (MQTT 5 retain handling 1), so a site that holds a cache
does not download its full cache again after a dropped uplink or a broker restart; what
the hub published meanwhile (a new full, deltas, commands) waits in the session and
arrives on reconnect. The ``cache`` subscription is taken anew (which brings the retained
``cache.full``) on the first connect of every process, and on every connect while the
site holds no cache (a fresh or wiped install that finds an old session, or one that could
not store its cache): a cache message paho acknowledged but the previous process never
applied (killed in between) is then replaced at once by the retained full, rather than
when the hub, seeing the old version in the site's status, sends what it lacks
(hub/publisher.py ``converge``, after its resend time). Whatever else the old session
queued is judged as always (a delta on a base the site does not hold is refused
``base_mismatch``, which the hub answers with a full; commands are verified and expire).

The link does not queue while offline: ``publish`` says whether the message went out,
and the agent's outbox resends what the hub has not acknowledged after a reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from wire.errors import WireError
from wire.topics import SITE_READS, Kind, parse, topic

from .config import EdgeConfig, read_password

log = logging.getLogger(__name__)


class LinkSink(Protocol):
    """Called on paho's network thread: hand over and return at once."""

    def link_up(self) -> None: ...

    def link_down(self, reason: str) -> None: ...

    def link_message(self, kind: Kind, payload: bytes) -> None: ...

    def holds_cache(self) -> bool:
        """Whether the site holds a cache (read on paho's thread: a plain attribute)."""


class Link:
    def __init__(self, cfg: EdgeConfig, sink: LinkSink, *, will: bytes, min_backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        self.site = cfg.site.id
        self._cfg = cfg.hub
        self._sink = sink
        self._connected = threading.Event()
        self._closing = False
        #: Until the first CONNACK of this process (see ``_on_connect``).
        self._process_start = True
        self._status_topic = topic(self.site, Kind.STATUS)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"torwart-site-{self.site}",
                        protocol=MQTTProtocolVersion.MQTTv5)
        # Hold QoS 1 messages in flight generously: a reconnect replays a whole outbox batch.
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(min_delay=max(1, round(min_backoff)), max_delay=max(1, round(max_backoff)))
        user = self._cfg.username or (None if self._cfg.cert_file else self.site)
        if user is not None:
            c.username_pw_set(user, read_password(cfg))
        self._tls: ssl.SSLContext | None = None
        if self._cfg.tls:
            # Our own context, so that a renewed certificate can be loaded into it (reload_cert).
            self._tls = ssl.create_default_context(cafile=self._cfg.ca_file)
            if self._cfg.cert_file:
                self._tls.load_cert_chain(self._cfg.cert_file, self._cfg.key_file)
            c.tls_set_context(self._tls)
        c.will_set(self._status_topic, will, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting with backoff until ``stop``."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._cfg.session_expiry
        self._client.connect_async(self._cfg.host, self._cfg.effective_port, keepalive=self._cfg.keepalive,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self, goodbye: bytes | None = None, timeout: float = 3.0) -> None:
        """Publish ``goodbye`` (the retained offline status) if connected, then disconnect."""
        if goodbye is not None and self.connected:
            info = self._client.publish(self._status_topic, goodbye, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    def reload_cert(self) -> None:
        """Use the (renewed) certificate and key files from the next connection on; the
        current connection stays up."""
        if self._tls is not None and self._cfg.cert_file:
            self._tls.load_cert_chain(self._cfg.cert_file, self._cfg.key_file)
            log.info("the next connection uses the renewed certificate")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- publishing ----------------------------------------------------------------------

    def publish(self, kind: Kind, payload: bytes, *, door: str | None = None, retain: bool = False) -> bool:
        """Publish at QoS 1 under this site's root; False when the link is down."""
        if not self.connected:
            return False
        info = self._client.publish(topic(self.site, kind, door), payload, qos=1, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # --- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.warning("broker refused the connection: %s", rc)
            return
        if flags.session_present and (self._process_start or not self._sink.holds_cache()):
            # A resumed session does not resend the retained full cache. Take the
            # subscription anew, which brings it, when this site has none (it could not
            # store it, or a fresh install found an old session), and once per process
            # start: a cache message the previous process took but never applied (killed
            # in between; paho had acknowledged it) is then not waited for until the hub
            # resends. A reconnect of a running process (a dropped uplink, a broker
            # restart) downloads nothing again.
            client.unsubscribe(topic(self.site, Kind.CACHE))
        self._process_start = False
        # Retained messages only for a subscription the session did not have yet (see above).
        client.subscribe([(topic(self.site, kind), SubscribeOptions(qos=1, retainHandling=1)) for kind in SITE_READS])
        self._connected.set()
        log.info("connected to %s:%s (%s)", self._cfg.host, self._cfg.effective_port,
                 "session resumed" if flags.session_present else "new session")
        self._sink.link_up()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            (log.info if self._closing else log.warning)("disconnected from the broker: %s", rc)
            self._sink.link_down(str(rc))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            t = parse(msg.topic)
        except WireError:
            log.warning("message on unexpected topic %r dropped", msg.topic)
            return
        if t.site != self.site or t.kind not in SITE_READS:
            log.warning("message on %r is not for this site; dropped", msg.topic)
            return
        self._sink.link_message(t.kind, bytes(msg.payload))
