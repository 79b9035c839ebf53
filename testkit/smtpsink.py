"""A real SMTP server for tests (aiosmtpd on a free loopback port) that keeps every
message it accepts; ``stop()`` and ``start()`` again take it down and back on the same port."""

from __future__ import annotations

import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from .util import free_port


class Keep:
    """The handler: keeps each message in its sink (subclass it to answer otherwise)."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.sink.lock:
            self.sink.received.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


class SmtpSink:
    """``received``: (envelope recipients, parsed message) for each message accepted."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.lock = threading.Lock()
        self.received: list[tuple[list[str], EmailMessage]] = []
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = Controller(Keep(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
