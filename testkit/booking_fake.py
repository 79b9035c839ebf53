"""A real HTTP server that speaks the booking platform contract of PROTOCOL.md §5.

Tests (and the demo) control its bookings and make it fail on demand: status codes,
timeouts, garbage and truncated bodies, wrong types, page loops, rate limits, slow pages,
and ``raw`` bodies of the test's choosing (``fail("raw", body=b"...")``, for fuzzing).

Faults hit the listings (and feeds) unless ``fail(..., on="check-in" | "release" | "write")``
aims them at the check-in or release POSTs (``write``: both), e.g. ``fail("status", 3,
status=503, on="check-in")``; ``checkins`` and ``releases`` record only the POSTs the
platform accepted, ``calls`` every request (with its arrival time ``at``).

It also serves one ICS feed per room at ``/ics/{resource_id}.ics`` (``put_ics``), without
the bearer token, as booking tools publish feeds under secret URLs; the query string is
ignored. Faults apply to feeds too, except ``wrong_types`` and ``page_loop``, which only
mean something for listings (a feed request still uses them up).

``push_webhook`` (``signed_webhook`` + ``post_webhook``) pushes a booking to a hub as the
platform does: ``X-Torwart-Timestamp`` and ``X-Torwart-Signature`` over ``TIMESTAMP.BODY``.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .booking_webhook import post_webhook, push_webhook, signed_webhook, webhook_signature
from .util import free_port

FAULT_KINDS = ("status", "timeout", "slow", "garbage", "truncated", "wrong_types", "page_loop", "rate_limit", "raw")
#: What a fault hits: listings and feeds (``read``), check-in or release POSTs, or both POSTs.
FAULT_TARGETS = ("read", "check-in", "release", "write")


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("time without offset")
    return t


@dataclass
class Fault:
    kind: str
    times: int | None = 1  # None: until heal()
    status: int = 500
    seconds: float = 0.0
    retry_after: int = 1
    #: ``raw``: this body is served as a 200 ``application/json`` answer (fuzzing).
    body: bytes = b""
    #: One of FAULT_TARGETS.
    on: str = "read"

    def hits(self, target: str) -> bool:
        return self.on == target or (self.on == "write" and target in ("check-in", "release"))


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None
    auth: str | None = None
    #: When the request arrived (Unix seconds).
    at: float = field(default_factory=time.time)


@dataclass
class BookingPlatform:
    """The fake. ``start()`` it, point a client at ``base_url``, change ``bookings`` at will."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    page_size: int = 100
    host: str = "127.0.0.1"
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    checkins: list[tuple[str, Any]] = field(default_factory=list)
    releases: list[tuple[str, Any]] = field(default_factory=list)
    ics_feeds: dict[str, bytes] = field(default_factory=dict)
    #: Serve listings from a sorted index kept between requests (a benchmark's million
    #: bookings); it is rebuilt when bookings change through ``put``, ``add``, ``cancel`` or
    #: ``load``, so with it change bookings only through those.
    indexed: bool = False

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._generation = 0
        self._index: tuple[int, str | None, list[dict[str, Any]]] | None = None
        self._faults: collections.deque[Fault] = collections.deque()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._clock_skew = 0

    # --- control ----------------------------------------------------------------------

    def now(self) -> dt.datetime:
        # Strictly increasing updated_at, so that paging order is total even within one ms.
        with self.lock:
            self._clock_skew += 1
            return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(microseconds=self._clock_skew)

    def put(self, booking: dict[str, Any], *, touch: bool = True) -> dict[str, Any]:
        """Add or replace a booking (raw JSON object; garbage allowed on purpose)."""
        with self.lock:
            b = dict(booking)
            if touch or "updated_at" not in b:
                b["updated_at"] = iso(self.now())
            self.bookings[str(b.get("id"))] = b
            self._generation += 1
            return b

    def load(self, bookings: list[dict[str, Any]], *, touch: bool = True) -> int:
        """Add or replace many bookings at once, each touched as ``put`` does (``touch``
        False keeps an ``updated_at`` they have): a listing sees all of them or none. The
        number of bookings held after."""
        with self.lock:
            stamped = [{**b, "updated_at": iso(self.now())} if touch or "updated_at" not in b else dict(b)
                       for b in bookings]
            self.bookings.update((str(b.get("id")), b) for b in stamped)
            self._generation += 1
            return len(self.bookings)

    def add(self, id: str, resource_id: str, member_id: str, start: dt.datetime, end: dt.datetime,
            *, status: str = "confirmed", pin: str | None = None) -> dict[str, Any]:
        return self.put({"id": id, "resource_id": resource_id, "member_id": member_id, "start": iso(start),
                         "end": iso(end), "status": status, "pin": pin})

    def cancel(self, id: str) -> dict[str, Any]:
        with self.lock:
            b = dict(self.bookings[id])
            b["status"] = "cancelled"
            return self.put(b)

    def fail(self, kind: str, times: int | None = 1, **params: Any) -> None:
        """Make the next ``times`` booking listings fail in the way ``kind`` names
        (``times=None``: until ``heal()``); ``on=`` aims the fault at writes instead
        (FAULT_TARGETS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        if params.get("on", "read") not in FAULT_TARGETS:
            raise ValueError(f"unknown fault target {params['on']!r}; one of {FAULT_TARGETS}")
        with self.lock:
            self._faults.append(Fault(kind, times, **params))

    def heal(self) -> None:
        with self.lock:
            self._faults.clear()

    def put_ics(self, resource_id: str, body: str | bytes) -> str:
        """Serve ``body`` as the ICS feed of ``resource_id``; return the feed's URL."""
        with self.lock:
            self.ics_feeds[resource_id] = body.encode() if isinstance(body, str) else body
        return self.ics_url(resource_id)

    def ics_url(self, resource_id: str) -> str:
        return f"{self.base_url}/ics/{urllib.parse.quote(resource_id)}.ics"

    def feed_calls(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == "GET" and c.path.startswith("/ics/")]

    def write_calls(self, action: str) -> list[Call]:
        """Every POST to ``action`` (``check-in`` or ``release``), accepted or not."""
        with self.lock:
            return [c for c in self.calls if c.method == "POST" and c.path.endswith("/" + action)]

    def listing_calls(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == "GET" and c.path == "/api/v1/bookings"]

    # --- server -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> BookingPlatform:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                platform._handle(self, "GET")

            def do_POST(self) -> None:
                platform._handle(self, "POST")

        self._stopping.clear()
        # A port outside the ephemeral range (testkit.util.free_port), so that a restart on
        # the same port finds it free.
        self._server = ThreadingHTTPServer((self.host, port or free_port(self.host)), Handler)
        self._server.daemon_threads = True
        # A short poll interval makes stop() (shutdown) take milliseconds instead of up to 0.5 s.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="booking-fake",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> BookingPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling -------------------------------------------------------------

    def _next_fault(self, target: str = "read") -> Fault | None:
        """The first fault aimed at ``target``, used up once."""
        with self.lock:
            i = next((i for i, f in enumerate(self._faults) if f.hits(target)), None)
            if i is None:
                return None
            f = self._faults[i]
            if f.times is not None:
                f.times -= 1
                if f.times <= 0:
                    del self._faults[i]
            return f

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self.lock:
            self.calls.append(Call(method, url.path, query, body, h.headers.get("Authorization")))
        if method == "GET" and url.path.startswith("/ics/") and url.path.endswith(".ics"):
            return self._feed(h, urllib.parse.unquote(url.path[len("/ics/"):-len(".ics")]))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, {"error": "unauthorized"})
        parts = url.path.strip("/").split("/")
        if method == "GET" and url.path == "/api/v1/bookings":
            return self._list(h, query)
        if method == "POST" and len(parts) == 5 and parts[:3] == ["api", "v1", "bookings"]:
            bid, action = parts[3], parts[4]
            if action in ("check-in", "release") and self._answer_fault(h, self._next_fault(action)):
                return None
            with self.lock:
                if bid not in self.bookings:
                    return self._send(h, 404, {"error": "no such booking"})
                if action == "check-in":
                    self.checkins.append((bid, body))
                    return self._send(h, 204, None)
                if action == "release":
                    self.releases.append((bid, body))
                    self.cancel(bid)
                    return self._send(h, 204, None)
        return self._send(h, 404, {"error": "not found"})

    def _answer_fault(self, h: BaseHTTPRequestHandler, fault: Fault | None) -> bool:
        """Answer for the faults that do not depend on the document; True if answered."""
        if fault is None:
            return False
        if fault.kind in ("timeout", "slow"):
            self._stopping.wait(fault.seconds)
            if fault.kind == "timeout":
                self._send(h, 504, {"error": "gateway timeout"})
                return True
        elif fault.kind == "status":
            self._send(h, fault.status, {"error": "injected failure"})
            return True
        elif fault.kind == "rate_limit":
            self._send(h, 429, {"error": "slow down"}, {"Retry-After": str(fault.retry_after)})
            return True
        elif fault.kind == "garbage":
            self._send_raw(h, 200, b"<html><body>Wartungsarbeiten</body></html>", "application/json")
            return True
        elif fault.kind == "raw":
            self._send_raw(h, 200, fault.body, "application/json")
            return True
        return False

    def _feed(self, h: BaseHTTPRequestHandler, resource_id: str) -> None:
        fault = self._next_fault()
        if self._answer_fault(h, fault):
            return
        with self.lock:
            data = self.ics_feeds.get(resource_id)
        if data is None:
            return self._send(h, 404, {"error": "no such feed"})
        if fault is not None and fault.kind == "truncated":
            data = data[: max(1, len(data) // 2)]
        self._send_raw(h, 200, data, "text/calendar; charset=utf-8")

    def _list(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        fault = self._next_fault()
        if self._answer_fault(h, fault):
            return
        try:
            since = parse_iso(query["updated_since"][0]) if "updated_since" in query else None
            token = query.get("page_token", [None])[0]
            offset = int(json.loads(base64.urlsafe_b64decode(token))["o"]) if token else 0
        except (ValueError, KeyError, TypeError):
            return self._send(h, 400, {"error": "bad updated_since or page_token"})
        items = self._listing(since)
        page = items[offset : offset + self.page_size]
        more = offset + self.page_size < len(items)
        nxt = base64.urlsafe_b64encode(json.dumps({"o": offset + self.page_size}).encode()).decode() if more else None
        if fault is not None and fault.kind == "page_loop":
            nxt = token or base64.urlsafe_b64encode(json.dumps({"o": 0}).encode()).decode()
        doc: dict[str, Any] = {"items": page, "next_page_token": nxt}
        if fault is not None and fault.kind == "wrong_types":
            doc = {"items": {"not": "a list"}, "next_page_token": 17}
        data = json.dumps(doc).encode()
        if fault is not None and fault.kind == "truncated":
            data = data[: max(1, len(data) // 2)]
        self._send_raw(h, 200, data, "application/json")

    def _listing(self, since: dt.datetime | None) -> list[dict[str, Any]]:
        """The bookings changed at or after ``since`` (all: None), in paging order."""
        key_since = None if since is None else since.isoformat()
        with self.lock:
            if self.indexed and self._index is not None and self._index[:2] == (self._generation, key_since):
                return self._index[2]
            generation, items = self._generation, list(self.bookings.values())

        def key(b: dict[str, Any]) -> tuple[str, str]:
            return (str(b.get("updated_at", "")), str(b.get("id", "")))

        if since is not None:
            def changed(b: dict[str, Any]) -> bool:
                try:
                    return parse_iso(str(b.get("updated_at"))) >= since
                except ValueError:
                    return True  # garbage items are served; the client must cope

            items = [b for b in items if changed(b)]
        items.sort(key=key)
        if self.indexed:
            with self.lock:
                self._index = (generation, key_since, items)
        return items

    def _send(self, h: BaseHTTPRequestHandler, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(h, status, b"" if doc is None else json.dumps(doc).encode(), "application/json", headers)

    def _send_raw(self, h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
                  headers: dict[str, str] | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            if data:
                h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired first)


__all__ = ["BookingPlatform", "Call", "Fault", "iso", "parse_iso", "post_webhook", "push_webhook", "signed_webhook",
           "webhook_signature"]
