"""The site agent: wires readers, doors, the local stores and the MQTT link together.

Threads meet at one queue (ARCHITECTURE.md, wire.handoff.WorkQueue): reader threads,
gpiozero callbacks, paho's network thread and APScheduler jobs only post work items; the
main loop runs them one at a time and alone touches the main SQLite connections. Cache
envelopes are verified and applied on a worker thread with its own connection
(edge/cacheworker.py), so that badges are still decided while a large cache is applied.

The unlock path never touches the network (edge/badges.py): read → hash → indexed lookup
→ decide → relay; the event is committed to the outbox after the relay is driven, and
published when the link is up.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import secrets
import threading
import time
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from readers import Reader, ReaderError, make_reader
from wire import messages as m
from wire import software_version
from wire.handoff import Work, WorkQueue
from wire.topics import Kind

from . import renew
from .badges import BadgePath
from .cache import CacheStore
from .cacheworker import CacheWorker
from .clock import ClockJudge, ClockSource, site_clock
from .commands import CommandHandler
from .config import EdgeConfig, site_key
from .decide import DenialLimiter, exit_decision
from .door import Door
from .errors import ReaderFailed, StorageError
from .events import EventStream
from .limiter import DurableLimiter
from .link import Link
from .occupancy import Occupancy
from .outbox import Outbox
from .runlock import RunLock
from .schedule import scheduled_mode
from .sdnotify import Notifier
from .statedb import StateDB
from .trust import Trust

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, cfg: EdgeConfig, *, clock: ClockSource | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.site = cfg.site.id
        self.boot = secrets.token_hex(8)
        self.clock = clock or site_clock(cfg.policy.clock_trust, cfg.policy.chrony_socket)
        self.notifier = notifier or Notifier()
        self._work = WorkQueue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._sched_beat = time.monotonic()
        # The site's pins and data are ours alone (a bring-up command holds them off): DataDirBusy.
        self._runlock = RunLock.acquire(cfg.data_path, "the agent")
        # Doors first: every relay is driven to its locked state before anything else runs.
        self.doors: dict[str, Door] = {}
        try:
            for d in cfg.doors:
                self.doors[d.id] = Door(d, self)
            self._key = site_key(cfg)
        except Exception:
            self._close_doors()
            self._runlock.release()
            raise
        self.judge = ClockJudge(self.clock, cfg.policy.clock_trust)
        self._denials = DenialLimiter(cfg.policy.deny_burst, cfg.policy.deny_refill_seconds)
        self.readers: dict[str, Reader] = {}
        self.reader_cfg = {r.id: r for r in cfg.readers}
        self._sched = BackgroundScheduler(timezone=cfg.site.timezone)
        self._cache_error: str | None = None  # storing a new cache failed (until one is stored)
        self._holds_cache = False  # for the link's thread (see holds_cache)

    # --- the loop ---------------------------------------------------------------------------

    def post(self, work: Work) -> None:
        """Run ``work`` on the main loop (from any thread)."""
        self._work.post(work)

    def run(self) -> None:
        """Start everything and run the main loop until ``stop()``."""
        try:
            self._startup()
            self._work.run(self._stopping, self._work_failed)
        finally:
            self._shutdown()
            self._stopped.set()

    def _work_failed(self, exc: Exception) -> None:
        if isinstance(exc, StorageError):
            self.events.storage_failed(exc)
        else:
            log.error("work item failed; the agent carries on", exc_info=exc)

    def stop(self) -> None:
        self._stopping.set()

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    def _open(self) -> None:
        """Open the stores (on the main loop's thread: SQLite connections stay on their thread)."""
        data = self.cfg.data_path
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cache = CacheStore(data / "cache.db")
        self.outbox = Outbox(data / "outbox.db", self.site, self.boot)
        self.state = StateDB(data / "state.db")
        self.limiter = DurableLimiter(self._denials, self.state, self.clock.monotonic())
        self.events = EventStream(self.outbox, publish=lambda raw: self.link.publish(Kind.EVENT, raw),
                                  connected=lambda: self.link.connected,
                                  resend_seconds=self.cfg.policy.resend_seconds, post=self.post,
                                  status_changed=self.publish_status)
        renew.finish_pending(self.cfg)
        self.link = Link(self.cfg, self, will=self._status_bytes(online=False))
        self.renewer = renew.Renewer(self.cfg, self.link.reload_cert)
        self.commands = CommandHandler(self)
        self._cache_worker = CacheWorker(self.cache.path, self.commands.apply_cache,
                                         lambda v, e: self.post(lambda: self._cache_done(v, e)))
        self.occupancy = Occupancy(self.cfg, self.state, self.emit,
                                   lambda b: self.link.publish(Kind.OCCUPANCY, b, retain=True), self.clock.time)
        self.badges = BadgePath(key=self._key, reader_cfg=self.reader_cfg, readers=self.readers, doors=self.doors,
                                clock=self.clock, judge=self.judge, cache=self.cache, limiter=self.limiter,
                                occupancy=self.occupancy, emit=self.emit,
                                take_enrollment=self.commands.take_enrollment)

    def _startup(self) -> None:
        self._open()
        self._holds_cache = self.cache.version is not None
        if self.state.flag("lockdown", False):
            for d in self.doors.values():
                d.set_mode("lockdown")
        else:
            self._office_hours()
        self._check_clock()
        self.emit("system.started", software=software_version())
        for rcfg in self.cfg.readers:
            try:
                reader = make_reader(rcfg.settings, self)
                self.readers[rcfg.id] = reader
                reader.start()
            except ReaderError as exc:
                raise ReaderFailed(str(exc)) from exc
        self._cache_worker.start()
        self.link.start()
        p = self.cfg.policy
        self._sched.add_job(lambda: self.post(self.publish_status), "interval", seconds=p.status_interval_seconds)
        self._sched.add_job(lambda: self.post(self.events.resend_check), "interval",
                            seconds=max(1.0, p.resend_seconds / 4))
        self._sched.add_job(lambda: self.post(self._check_clock), "interval", seconds=10)
        self._sched.add_job(lambda: self.post(self._office_hours), "interval", seconds=15)
        self._sched.add_job(lambda: self.post(self._housekeeping), "interval", hours=1)
        self._sched.add_job(lambda: self.post(lambda: self.limiter.save(self.clock.monotonic())), "interval",
                            seconds=60)
        self._sched.add_job(lambda: self.post(self.occupancy.expire), "interval", seconds=30)
        hh, mm = p.daily_reset.split(":")
        self._sched.add_job(lambda: self.post(lambda: self.occupancy.checkout_all(None, "daily_reset")), "cron",
                            hour=int(hh), minute=int(mm))
        self._sched.add_job(self._scheduler_alive, "interval", seconds=1)
        if self.renewer.enabled:
            self._sched.add_job(self.renewer.check, "interval", seconds=self.renewer.every, max_instances=1,
                                next_run_time=dt.datetime.now(dt.UTC))
        self._sched.start()
        self._housekeeping()
        if self.notifier.watchdog_seconds:
            threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        # Everything made so far lives as long as the agent: keep the collector from walking
        # it again and again (shorter pauses on the badge path).
        gc.collect()
        gc.freeze()
        self.notifier.ready(f"site {self.site}: {len(self.doors)} doors, {len(self.readers)} readers")
        log.info("site %s running (boot %s, cache version %s)", self.site, self.boot, self.cache.version)

    def _shutdown(self) -> None:
        try:
            self._shutdown_all()
        finally:
            self._runlock.release()

    def _shutdown_all(self) -> None:
        self.notifier.stopping()
        if not hasattr(self, "commands"):  # startup failed before everything was open
            self._close_doors()
            for name in ("cache", "outbox", "state"):
                if hasattr(self, name):
                    getattr(self, name).close()
            return
        for r in self.readers.values():
            r.stop()
        self._sched.shutdown(wait=False)
        self._cache_worker.stop(timeout=10)
        try:
            self.emit("system.stopping", software=software_version())
            self._work.drain()  # events from the last moments, before going
        except StorageError as exc:
            log.error("could not record system.stopping: %s", exc)
        self.link.stop(goodbye=self._status_bytes(online=False))
        self._close_doors()
        self.limiter.save(self.clock.monotonic())
        for store in (self.cache, self.outbox, self.state):
            store.close()
        log.info("site %s stopped", self.site)

    def _close_doors(self) -> None:
        for d in self.doors.values():
            d.close()

    def _scheduler_alive(self) -> None:
        self._sched_beat = time.monotonic()

    def _watchdog(self) -> None:
        """Pet systemd's watchdog only while the main loop and the scheduler are alive."""
        period = (self.notifier.watchdog_seconds or 10) / 2
        while not self._stopping.wait(period):
            now = time.monotonic()
            if now - self._work.beat < period and now - self._sched_beat < period + 2:
                self.notifier.watchdog()
            else:
                log.error("a loop is stuck (main %.1f s, scheduler %.1f s ago): not petting the watchdog",
                          now - self._work.beat, now - self._sched_beat)

    # --- events -------------------------------------------------------------------------------

    def emit(self, type_: str, *, ts: float | None = None, clock_synced: bool | None = None, **fields: Any) -> None:
        """Record an event (edge/events.py). ``ts`` and ``clock_synced`` default to now and
        the clock judge's last verdict; a decision passes the ones it was made with."""
        self.events.emit(type_, ts=self.clock.time() if ts is None else ts,
                         clock_synced=bool(self.judge.state) if clock_synced is None else clock_synced, **fields)

    # --- badges -----------------------------------------------------------------------------------

    def on_credential(self, reader_id: str, credential: str) -> None:  # reader thread
        self.post(lambda: self.badges.badge(reader_id, credential))

    def on_reader_error(self, reader_id: str, error: ReaderError) -> None:  # reader thread
        self.post(lambda: self.emit("reader.error", reader=reader_id, error=str(error)[:200]))

    def on_reader_state(self, reader_id: str, state: str) -> None:  # reader thread (supervised readers)
        if state in ("online", "offline", "tamper"):
            self.post(lambda: self.emit(f"reader.{state}", reader=reader_id))

    # --- doors ------------------------------------------------------------------------------------

    def door_event(self, door_id: str, type_: str, fields: dict[str, Any]) -> None:  # gpio/timer thread
        self.post(lambda: self.emit(type_, door=door_id, **fields))

    def door_state_changed(self, door_id: str) -> None:  # gpio/timer thread
        self.post(lambda: self.publish_door(door_id))

    def exit_pressed(self, door_id: str) -> None:  # gpio thread
        def work() -> None:
            door = self.doors[door_id]
            d = exit_decision(door.mode)
            door.unlock(by="exit_button")
            self.emit("access.granted", door=door_id, cred=None, who=None, ref=None, reason=d.reason)

        self.post(work)

    def publish_door(self, door_id: str) -> None:
        s = self.doors[door_id].snapshot()
        msg = m.DoorState(door=s.door, locked=s.locked, open=s.open, alarm=s.alarm, mode=s.mode,
                          ts=self.clock.time())
        self.link.publish(Kind.DOOR, m.encode(msg), door=door_id, retain=True)

    def set_lockdown(self, on: bool) -> None:
        self.state.set_flag("lockdown", on)
        if on:
            for d in self.doors.values():
                d.set_mode("lockdown")
        else:
            for d in self.doors.values():
                d.set_mode("normal")
            self._office_hours()
        self.publish_status()

    def _office_hours(self) -> None:
        """Doors with office hours: ``office_hours`` or ``normal``, by a trusted clock only."""
        if self.state.flag("lockdown", False):
            return
        now, (trusted, _) = self.clock.time(), self.judge.trusted(self.cache.newest_issued_at)
        for d in self.doors.values():
            if d.cfg.office_hours:
                d.set_mode(scheduled_mode(d.cfg.office_hours, now, self.cfg.site.timezone, clock_trusted=trusted))

    # --- status, clock, housekeeping ----------------------------------------------------------------

    def _status_bytes(self, *, online: bool) -> bytes:
        meta = self.cache.meta()
        msg = m.Status(
            state="online" if online else "offline", ts=self.clock.time(), boot=self.boot,
            software=software_version(), cache_version=meta.version, cache_expires_at=meta.expires_at,
            clock_synced=bool(self.judge.state), outbox_pending=self.outbox.pending_count(),
            lockdown=bool(self.state.flag("lockdown", False)), stream=self.outbox.stream,
            storage_error="; ".join(e for e in (self.events.storage_error, self._cache_error) if e)[:512] or None,
            keys=self._trusted_kids(),
        )
        return m.encode(msg)

    def _trusted_kids(self) -> list[str]:
        """The kids of the hub keys trusted now (the Last Will is made before the commands)."""
        if hasattr(self, "commands"):
            return self.commands.trust.kids()
        return Trust.of(self.cfg.hub.signing_public_key, self.cache).kids()

    def publish_status(self) -> None:
        self.link.publish(Kind.STATUS, self._status_bytes(online=True), retain=True)

    def _check_clock(self) -> None:
        change = self.judge.check(self.cache.newest_issued_at)
        if change is not None:
            self.emit(change, detail=self.judge.detail[:200])
            self.publish_status()
            self._office_hours()  # the schedule follows the verdict at once, not at its next tick

    def _housekeeping(self) -> None:
        now = self.clock.time()
        n = self.outbox.purge(now, self.cfg.policy.retention_days)
        c = self.state.purge_commands(self.cache.stored_newest_issued_at())  # never by the wall clock
        if n or c:
            log.info("retention: deleted %d acknowledged events and %d old command ids", n, c)

    # --- link (paho thread) ---------------------------------------------------------------------------

    def link_up(self) -> None:
        def work() -> None:
            self.publish_status()
            for door_id in self.doors:
                self.publish_door(door_id)
            self.occupancy.publish()
            self.events.link_up()

        self.post(work)

    def link_down(self, reason: str) -> None:
        log.info("link down (%s); deciding offline, events wait in the outbox", reason)

    def holds_cache(self) -> bool:
        return self._holds_cache

    def link_message(self, kind: Kind, payload: bytes) -> None:
        if kind in (Kind.CACHE, Kind.CACHE_DELTA):
            self._cache_worker.put(kind, payload)
        elif kind is Kind.EVENT_ACK:
            self.post(lambda: self.events.on_ack(payload))
        elif kind is Kind.COMMAND:
            self.post(lambda: self.commands.handle(payload))

    # --- caches (applied on the worker thread, edge/cacheworker.py) -------------------------------

    def _cache_done(self, version: int | None, error: str | None) -> None:
        ack = m.CacheAck(version=version, ok=error is None, error=error, ts=self.clock.time())
        self.link.publish(Kind.CACHE_ACK, m.encode(ack))
        # Kept apart from event writes: an event written since says nothing about the room a
        # whole cache needs, so only a cache stored again clears it.
        if error == "storage":
            if self._cache_error is None:
                log.error("cache version %s could not be stored; the old one stays in force", version)
            self._cache_error = f"cache version {version} could not be stored (the old one stays in force)"
        elif error is None and self._cache_error is not None:
            self._cache_error = None
            log.warning("caches can be stored again")
        if error is None:
            self._holds_cache = True
            self.emit("cache.applied", version=version, error=None)
        else:
            self.emit("cache.rejected", version=version, error=error)
        self.publish_status()
        self._check_clock()

