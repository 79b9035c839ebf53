"""Admin actions from the command line: push a site's full cache, send a command, and
wait for the site's acknowledgement. They work whether or not ``torwart-hub run`` is
running (both use the same store; versions are assigned in its transactions)."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from wire import messages as m
from wire.errors import WireError
from wire.topics import Kind

from . import commands
from .caches import CacheManager
from .config import HubConfig, signing_key
from .errors import HubError
from .link import HubLink
from .store import open_store

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    ok: bool
    version: int | None = None
    error: str | None = None
    seconds: float = 0.0


class _Acks:
    """Collects one site's acks from a short-lived hub connection."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[Kind, bytes]] = queue.Queue()

    def link_up(self) -> None:
        """Nothing to do on (re)connect: this short-lived conversation only waits for replies."""

    def site_message(self, site: str, kind: Kind, door: str | None, payload: bytes) -> None:
        self.q.put((kind, payload))


def _connect(cfg: HubConfig, site: str, acks: _Acks, timeout: float) -> HubLink:
    link = HubLink(cfg.mqtt, acks, client_id=f"{cfg.mqtt.client_id}-cli-{uuid.uuid4().hex[:8]}",
                   persistent=False, subscribe=())
    link.start()
    if not link.wait_connected(min(timeout, 15)):
        link.stop()
        raise HubError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.effective_port}"
                       + (f" ({link.refusal})" if link.refusal else ""))
    link.subscribe_site(site, (Kind.CACHE_ACK, Kind.COMMAND_ACK))
    return link


def _wait(acks: _Acks, kind: Kind, type_: type[T], match: Callable[[T], bool], deadline: float) -> T | None:
    """The first ack of ``kind`` that decodes as ``type_`` and satisfies ``match``, or None
    at ``deadline`` (monotonic)."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            k, raw = acks.q.get(timeout=left)
        except queue.Empty:
            break
        if k is not kind:
            continue
        try:
            ack: T = m.decode(raw, type_)
        except WireError:
            continue
        if match(ack):
            return ack
    return None


def _site(cfg: HubConfig, site: str) -> None:
    if not any(s.id == site for s in cfg.sites):
        raise HubError(f"no site {site!r} in the configuration")


def push(cfg: HubConfig, site: str, *, timeout: float = 30.0) -> Result:
    """Publish the site's latest full cache (retained) and wait for the site's ack."""
    _site(cfg, site)
    cfg.hub.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(cfg.hub.store_url)
    acks = _Acks()
    try:
        caches = CacheManager(store, cfg, signing_key(cfg))
        caches.rebuild(site, int(time.time()))
        body = caches.full_body(site)
        link = _connect(cfg, site, acks, timeout)
        try:
            t0 = time.monotonic()
            if not link.publish(site, Kind.CACHE, caches.signed(body), retain=True):
                raise HubError("publishing failed: the broker connection dropped")
            caches.mark_retained_full(site, body.version)
            ack = _wait(acks, Kind.CACHE_ACK, m.CacheAck, lambda a: a.version == body.version, t0 + timeout)
            if ack is not None:
                secs = time.monotonic() - t0
                if ack.ok:
                    store.update_site_state(site, {"cache_version": ack.version})
                    return Result(True, body.version, None, secs)
                if ack.error == "stale_version":  # it already holds this version or newer
                    return Result(True, body.version, "already held", secs)
                return Result(False, body.version, ack.error, secs)
            return Result(False, body.version, f"no acknowledgement within {timeout:.0f} s (is the site online?)",
                          timeout)
        finally:
            link.stop()
    finally:
        store.close()


def command(cfg: HubConfig, site: str, action: str, *, door: str | None = None, seconds: int | None = None,
            room: str | None = None, timeout: float = 30.0) -> Result:
    """Send a signed command and wait for the site's command/ack."""
    _site(cfg, site)
    try:
        cmd = commands.build(site, action, door=door, seconds=seconds, room=room)
    except ValueError as exc:
        raise HubError(str(exc)) from None
    from wire import envelope

    acks = _Acks()
    link = _connect(cfg, site, acks, timeout)
    try:
        t0 = time.monotonic()
        if not link.publish_command(site, cmd, envelope.sign(cmd, signing_key(cfg))):
            raise HubError("publishing failed: the broker connection dropped")
        cack = _wait(acks, Kind.COMMAND_ACK, m.CommandAck, lambda a: a.id == cmd.id, t0 + timeout)
        if cack is not None:
            return Result(cack.ok, None, cack.error, time.monotonic() - t0)
        return Result(False, None, f"no acknowledgement within {timeout:.0f} s (is the site online?)", timeout)
    finally:
        link.stop()
