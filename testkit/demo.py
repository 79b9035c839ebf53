"""The demo: a whole county on one machine (``scripts/demo``).

    python -m testkit.demo [--fast] [--summary-json FILE] [--workdir DIR] [--keep] [--hour-seconds S] [--days N]

It starts Mosquitto on a free port, the booking platform fake with a week of bookings,
the hub (``torwart-hub run``, a subprocess) and two simulated village halls (each a
``python -m testkit.simsite`` subprocess: the real edge agent on mock pins), then plays a
day: members arrive and leave, a stranger is refused, a door is held open, a booking is
cancelled on the platform and its card stops working. It prints the dashboard's address
and logins, runs until Ctrl-C (``--fast``: one day in about a minute, then a summary as a
table and as JSON), and stops every process it started, also on errors.

Child processes log to files in the work directory (a fresh temporary directory unless
``--workdir`` is given; removed at the end unless ``--keep`` or something failed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .booking_fake import BookingPlatform
from .county import County
from .demo_county import (
    SITE_NAMES,
    TZ,
    add_week,
    has_users_command,
    hub_cli,
    hub_command,
    make_people,
    mqtt_passwords,
    write_county,
    write_members_csv,
    write_secret,
)
from .demo_day import DAY_LENGTH, Day, Tally, World
from .demo_procs import Child, DemoBroker
from .demo_report import hub_event_counts, leftover_processes, print_report, summarise
from .demo_site import SiteView

FAST_HOUR = 4.0
GENTLE_HOUR = 60.0
READY_TIMEOUT = 90.0


@dataclass
class Options:
    fast: bool = False
    hour_seconds: float | None = None
    days: int | None = None  # None: one day with --fast, else until Ctrl-C
    workdir: Path | None = None
    keep: bool = False
    summary_json: Path | None = None

    @property
    def hour(self) -> float:
        return self.hour_seconds or (FAST_HOUR if self.fast else GENTLE_HOUR)


@dataclass
class Login:
    user: str
    password: str
    what: str


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.children: list[Child] = []
        self.broker: DemoBroker | None = None
        self.platform: BookingPlatform | None = None
        self.county: County | None = None
        self.sites: dict[str, SiteView] = {}
        self.tally = Tally()
        self.world: World | None = None
        self.logins: list[Login] = []
        self.dashboard_note = ""
        self.started = time.time()
        self.play_started: float | None = None
        self.play_ended: float | None = None
        self.failed: str | None = None
        self.interrupted = False
        self.dir = opts.workdir or Path(tempfile.mkdtemp(prefix="torwart-demo-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir = self.dir.resolve()

    # --- the whole run ---------------------------------------------------------------------

    def run(self) -> int:
        summary: dict[str, Any] = {}
        try:
            self.start()
            self.play()
            self.play_ended = time.time()
            if self.opts.fast:
                self.settle()
        except KeyboardInterrupt:
            self.interrupted = True
            say("\nStopping (interrupted)...")
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            say(f"\ndemo: error: {self.failed}")
        finally:
            if self.play_started is not None and self.play_ended is None:
                self.play_ended = time.time()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # stopping is bounded; let it finish
            self.stop()
            summary = self.summary()
            self.report(summary)
        ok = self.failed is None and not summary.get("problems")
        if ok and not self.opts.keep and self.opts.workdir is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            say(f"Logs and configs: {self.dir}")
        return 0 if ok else 1

    def start(self) -> None:
        say(f"Torwart demo: a county on one machine (work directory {self.dir})")
        logins = mqtt_passwords()
        self.broker = DemoBroker(self.dir / "broker", users=logins)
        self.broker.start()
        self.children.append(self.broker.child)  # type: ignore[arg-type]
        say(f"  Mosquitto on 127.0.0.1:{self.broker.port} (a password per site, each site confined to its topics; "
            f"the hub on :{self.broker.hub_port})")
        self.platform = BookingPlatform().start()
        hour = self.opts.hour
        self.county = county = write_county(
            self.dir, self.broker, self.platform, sync_interval=int(max(5, min(30, hour / 3))),
            unlock_seconds=5.0, held_open_seconds=max(2.0, min(20.0, hour * 0.75)), long_held_open=120.0,
            mqtt_users=logins,
        )
        people = make_people()
        n = add_week(self.platform, county, people, dt.datetime.now(TZ).date())
        say(f"  booking platform fake on {self.platform.base_url}: {n} bookings this week (not today)")
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
        for site_id, files in county.sites.items():
            control = files.dir / "control"
            child = Child(f"site {site_id}", [sys.executable, "-m", "testkit.simsite", "--config",
                                              str(files.config_path), "--control", str(control)],
                          files.dir / "agent.log", env=env).start()
            self.children.append(child)
            self.sites[site_id] = SiteView(site_id, SITE_NAMES[site_id], files, control, child)
        members = write_members_csv(self.dir / "members.csv", people)
        out = hub_cli(county, "cards", "import", str(members)).strip().splitlines()
        say(f"  hub: {out[0] if out else 'cards imported'}")
        hub_cli(county, "grants", "add", people["klaus"].member_id or "", "minheim", "--label", "Hausmeister")
        say("  hub: standing grant for Klaus Wagner (Hausmeister) at Bürgerhaus Minheim")
        self.add_users()
        hub = Child("hub", [*hub_command(), "run", "--config", str(county.hub_config_path)],
                    county.hub_config_path.parent / "hub.log").start()
        self.children.append(hub)
        self.wait_ready(hub, people["klaus"].credential)
        self.world = World(self.platform, county, people, self.sites, say, self.tally)

    def add_users(self) -> None:
        assert self.county is not None
        if not has_users_command():
            self.dashboard_note = ("the dashboard login is not available yet: this checkout's torwart-hub has no "
                                   "`users` command")
            return
        for user, role, sites, what in (("admin", "admin", None, "admin, every site"),
                                        ("hausmeister-minheim", "caretaker", "minheim", "caretaker of Minheim")):
            password = secrets.token_urlsafe(12)
            pw_file = write_secret(self.dir / f"{user}.password", password)
            args = ["users", "add", user, "--role", role, "--password-file", str(pw_file)]
            hub_cli(self.county, *args, *(["--sites", sites] if sites else []))
            self.logins.append(Login(user, password, what))

    def wait_ready(self, hub: Child, caretaker_card: str) -> None:
        assert self.county is not None
        url = self.county.http_url
        t0 = time.monotonic()

        def healthy() -> bool:
            hub.check()
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:  # noqa: S310 (our own hub)
                    return bool(json.loads(r.read()).get("mqtt"))
            except (OSError, ValueError):
                return False

        _wait(healthy, READY_TIMEOUT, "the hub to answer /healthz with MQTT connected")
        for sv in self.sites.values():
            sv.wait(sv.ready, READY_TIMEOUT, "the agent's databases")
            sv.wait(lambda sv=sv: sv.cache_version() is not None, READY_TIMEOUT,  # type: ignore[misc]
                    "a first cache from the hub")
        minheim = self.sites["minheim"]
        minheim.wait(lambda: None in minheim.refs_for(caretaker_card), READY_TIMEOUT, "the caretaker's grant")
        say(f"  hub on {url}, both halls online with signed caches "
            f"({', '.join(f'{s.id} v{s.cache_version()}' for s in self.sites.values())}), "
            f"ready after {time.monotonic() - t0:.1f} s")
        say()
        self.print_dashboard()

    def print_dashboard(self) -> None:
        assert self.county is not None
        say(f"Dashboard: {self.county.http_url}/")
        if self.logins:
            for login in self.logins:
                say(f"  login {login.user} / {login.password}   ({login.what})")
        else:
            say(f"  {self.dashboard_note}")
        say()

    def play(self) -> None:
        days = self.opts.days if self.opts.days is not None else (1 if self.opts.fast else 0)
        hour = self.opts.hour
        say(f"A day in two village halls on the Mosel (one hour of the day = {hour:g} s)"
            + ("" if days else "; Ctrl-C stops the demo"))
        assert self.world is not None
        t0 = self.play_started = time.time()
        index = 1
        while True:
            Day(self.world, index, t0, hour).play()
            if days and index >= days:
                return
            index += 1
            t0 += DAY_LENGTH * hour  # the next 07:00, once every booking of the day has ended
            say(f"\nThe halls are quiet for the night; day {index} begins in {max(0.0, t0 - time.time()):.0f} s.\n")
            self.print_dashboard()

    def settle(self) -> None:
        """Wait until the hub has acknowledged every event of both halls."""
        for sv in self.sites.values():
            sv.wait(sv.all_acked, 60, "every event acknowledged by the hub")
        if self.platform is not None:
            deadline = time.monotonic() + 5  # the hub reports check-ins to the platform in the background
            while len(self.platform.checkins) < self.tally.checkins and time.monotonic() < deadline:
                time.sleep(0.05)

    # --- stopping -------------------------------------------------------------------------------

    def stop(self) -> None:
        for sv in self.sites.values():
            sv.close()
        # Sites first (their last events reach the hub), then the hub, then the broker.
        for child in self.children:
            if child.name.startswith("site"):
                child.stop()
        for child in self.children:
            if child.name == "hub":
                child.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.platform is not None:
            self.platform.stop()

    def summary(self) -> dict[str, Any]:
        counts, reasons = ({}, Counter[str]()) if self.county is None else hub_event_counts(
            self.county.hub_config_path, tuple(SITE_NAMES), since=self.started - 60)
        played = 0.0
        if self.play_started is not None:
            played = (self.play_ended or time.time()) - self.play_started
        pids = [c.pid for c in self.children if c.pid is not None]
        return summarise(
            counts, reasons, self.tally, fast=self.opts.fast and not self.interrupted,
            platform_checkins=len(self.platform.checkins) if self.platform is not None else 0,
            played=played, run=time.time() - self.started,
            dashboard={"url": f"{self.county.http_url}/" if self.county else None,
                       "users": [x.user for x in self.logins], "note": self.dashboard_note or None},
            started=len(pids), left=leftover_processes(self.dir, pids),
            interrupted=self.interrupted, error=self.failed,
        )

    def report(self, doc: dict[str, Any]) -> None:
        print_report(doc, self.tally, say)
        if self.opts.summary_json is not None:
            self.opts.summary_json.parent.mkdir(parents=True, exist_ok=True)
            self.opts.summary_json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            say(f"  summary written to {self.opts.summary_json}")


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/demo", description="A whole county on one machine: Mosquitto, the "
                                "booking platform fake, the hub and two simulated village halls, playing a day. "
                                "Ctrl-C stops it and every process it started.")
    p.add_argument("--fast", action="store_true", help="play one day in about a minute, print a summary, exit")
    p.add_argument("--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON to FILE")
    p.add_argument("--workdir", type=Path, metavar="DIR", help="put configs, databases and logs here (kept)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory at the end")
    p.add_argument("--hour-seconds", type=float, metavar="S",
                   help=f"real seconds per hour of the day (default {FAST_HOUR:g} with --fast, else {GENTLE_HOUR:g})")
    p.add_argument("--days", type=int, metavar="N", help="play N days (default: 1 with --fast, else until Ctrl-C)")
    a = p.parse_args(argv)
    if a.hour_seconds is not None and a.hour_seconds < 2:
        p.error("--hour-seconds must be at least 2")
    if a.workdir is not None and a.workdir.exists() and any(a.workdir.iterdir()):
        p.error(f"--workdir {a.workdir} is not empty: every run starts a new county (give a new directory)")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    opts = Options(fast=a.fast, hour_seconds=a.hour_seconds, days=a.days, workdir=a.workdir, keep=a.keep,
                   summary_json=a.summary_json)
    return Demo(opts).run()


if __name__ == "__main__":
    sys.exit(main())
