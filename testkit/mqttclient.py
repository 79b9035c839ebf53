"""A small paho-mqtt (MQTT 5) client for tests and tools: connect, publish, collect, wait.

The edge agent has its own link (edge/link.py); this one is the "other side" in tests
and the load generators of the benchmarks.
"""

from __future__ import annotations

import queue
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .util import next_matching


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    #: The MQTT 5 message expiry interval left when the broker delivered it (None: none set).
    expiry: int | None = None


class ConnectRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"broker refused the connection: {reason}")
        self.reason = reason


class TestClient:
    """Connects at construction (raising ConnectRefused or TimeoutError); messages of every
    subscription land in ``messages`` (a queue)."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
        timeout: float = 10.0,
    ) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._connected = threading.Event()
        self._connect_reason: str | None = None
        self._acks: dict[int, ReasonCode | list[ReasonCode]] = {}
        self._subscriptions: dict[str, int] = {}
        self.connects = 0
        self._ack_cv = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        if username is not None:
            self.c.username_pw_set(username, password)
        if ca_file is not None:
            self.c.tls_set(ca_certs=str(ca_file), certfile=str(cert_file) if cert_file else None,
                           keyfile=str(key_file) if key_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = self._on_disconnect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry
        try:
            self.c.connect(host, port, keepalive=30, clean_start=clean_start, properties=props)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectRefused(f"{type(exc).__name__}: {exc}") from None
        self.c.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise ConnectRefused(self._connect_reason or "no CONNACK (connection closed or timed out)")
        if self._connect_reason is not None:
            self.close()
            raise ConnectRefused(self._connect_reason)

    def _on_connect(self, c: Any, ud: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self._connect_reason = str(rc)
        else:
            self.connects += 1
            # paho reconnects by itself; a clean session needs its subscriptions again.
            for t, qos in self._subscriptions.items():
                c.subscribe(t, qos)
        self._connected.set()

    def _on_disconnect(self, c: Any, ud: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if not self._connected.is_set():
            self._connect_reason = f"disconnected before CONNACK ({rc})"
            self._connected.set()

    def _on_message(self, c: Any, ud: Any, msg: mqtt.MQTTMessage) -> None:
        expiry = getattr(msg.properties, "MessageExpiryInterval", None) if msg.properties is not None else None
        self.messages.put(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, expiry))

    def _on_publish(self, c: Any, ud: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._ack_cv:
            self._acks[mid] = rc
            self._ack_cv.notify_all()

    def _on_subscribe(self, c: Any, ud: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._ack_cv:
            self._acks[mid] = rcs
            self._ack_cv.notify_all()

    def _wait_ack(self, mid: int, timeout: float) -> ReasonCode | list[ReasonCode]:
        with self._ack_cv:
            if not self._ack_cv.wait_for(lambda: mid in self._acks, timeout):
                raise TimeoutError(f"no acknowledgement for message id {mid}")
            return self._acks.pop(mid)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10.0) -> list[ReasonCode]:
        """Subscribe and wait for SUBACK; return its reason codes (granted QoS or a refusal)."""
        self._subscriptions[topic] = qos
        rc, mid = self.c.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionError(f"subscribe failed: {mqtt.error_string(rc)}")
        acks = self._wait_ack(mid, timeout)
        assert isinstance(acks, list)
        return acks

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                timeout: float = 10.0) -> ReasonCode | None:
        """Publish; for QoS ≥ 1 wait for PUBACK and return its reason code."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        rc = self._wait_ack(info.mid, timeout)
        assert isinstance(rc, ReasonCode)
        return rc

    def expect(self, topic: str | None = None, timeout: float = 10.0) -> Message:
        """The next message (on ``topic`` if given; others are dropped); TimeoutError if none."""
        return next_matching(self.messages, lambda msg: topic is None or msg.topic == topic, timeout,
                             f"message on {topic or 'any topic'}")

    def drain(self) -> list[Message]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
