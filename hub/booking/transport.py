"""HTTP for every booking adapter: one requests Session policy, retries, timeouts, limits.

Retries are urllib3's ``Retry`` mounted on the Session: connection errors, read timeouts
and the statuses 429, 500, 502, 503, 504 are retried with exponential backoff, and a
``Retry-After`` header on 429 or 503 is honoured (cut to ``max_retry_after`` so that one
sync stays bounded). Both GET and POST are retried: the only POSTs are check-in and
release, which mean the same thing when repeated.

Every failure becomes a :class:`hub.errors.SyncError` whose message names what was being
fetched (``what``) but never the URL: ICS feed URLs usually carry a secret (in the query or
in the path, next to an e-mail address). For the same reason this module installs a filter
on urllib3's own loggers that blanks request URLs, since urllib3 logs them (at WARNING when
it retries after a broken connection).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from hub.errors import SyncError

log = logging.getLogger(__name__)


class _HideUrls(logging.Filter):
    """Blanks URL and path arguments of urllib3 log records (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                "<url>" if isinstance(a, str) and (a.startswith("/") or "://" in a) else a for a in record.args
            )
        return True


_hide_urls = _HideUrls()
for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    if not any(isinstance(f, _HideUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_hide_urls)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "torwart-hub (booking sync)"


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Timeouts (seconds), retries and limits for one adapter.

    One request takes at most about ``(retries + 1) * (connect_timeout + read_timeout)``
    plus ``retries * max(backoff_max, max_retry_after)`` of waiting (the read timeout
    bounds each wait for data, so a server dripping bytes can stretch a read). Tests set
    ``backoff_factor`` near zero.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 3
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.retries < 0 or self.backoff_factor < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ValueError("retries and waits must not be negative")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


class _BoundedRetry(Retry):
    """urllib3's Retry with ``Retry-After`` cut to ``max_retry_after`` (urllib3 before 2.6
    has no such cap, and a platform asking for an hour must not stall a sync for an hour)."""

    def __init__(self, *args: Any, max_retry_after: float = 60.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.max_retry_after = max_retry_after

    def new(self, **kw: Any) -> _BoundedRetry:
        kw.setdefault("max_retry_after", self.max_retry_after)
        retry: _BoundedRetry = super().new(**kw)
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        seconds: float = min(super().parse_retry_after(retry_after), self.max_retry_after)
        log.info("platform asked to retry after %.1f s", seconds)
        return seconds


def make_session(policy: HttpPolicy) -> requests.Session:
    """A Session whose http and https adapters retry as ``policy`` says."""
    retry = _BoundedRetry(
        total=policy.retries,
        connect=policy.retries,
        read=policy.retries,
        status=policy.retries,
        other=0,
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=policy.backoff_factor,
        backoff_max=policy.backoff_max,
        respect_retry_after_header=True,
        # After the last retry the response comes back, so the caller can say "HTTP 503"
        # instead of urllib3's generic "too many retries".
        raise_on_status=False,
        max_retry_after=policy.max_retry_after,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


def _why(exc: requests.RequestException) -> str:
    """A reason without the URL: urllib3 puts the path and query into its messages, and a
    feed URL's query may be its secret. The inner reason names only host and port."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        return f"{type(exc).__name__}: {inner.reason}"
    if isinstance(exc, requests.Timeout):
        return f"{type(exc).__name__}: timed out"
    return type(exc).__name__


def request(
    session: requests.Session,
    policy: HttpPolicy,
    method: str,
    url: str,
    *,
    what: str,
    params: dict[str, str] | None = None,
    json: Any = None,
    auth: AuthBase | None = None,
) -> Reply:
    """Send one request (retried per ``policy``) and read the whole body.

    Returns whatever status came last; raises SyncError on connection failure, timeout
    after the retries, a broken body, or a body larger than ``policy.max_body_bytes``.
    """
    try:
        resp = session.request(
            method, url, params=params, json=json, auth=auth, timeout=policy.timeout, stream=True
        )
    except requests.RequestException as exc:
        raise SyncError(f"{what}: no answer after {policy.retries} retries ({_why(exc)})") from None
    try:
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > policy.max_body_bytes:
            raise SyncError(f"{what}: answer of {declared} bytes exceeds {policy.max_body_bytes}")
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(64 * 1024):
            size += len(chunk)
            if size > policy.max_body_bytes:
                raise SyncError(f"{what}: answer exceeds {policy.max_body_bytes} bytes")
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise SyncError(f"{what}: answer broke off ({_why(exc)})") from None
    finally:
        resp.close()
    return Reply(resp.status_code, b"".join(chunks), dict(resp.headers))
