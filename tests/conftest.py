"""Fixtures that give every test real parts: Mosquitto on a free port (plain, with
passwords + ACL, with TLS client certificates), pty-backed serial ports, gpiozero mock
pins, an HTTP fake of the booking platform, and the hub's signing key. Secrets are
generated per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from testkit.booking_fake import BookingPlatform
from testkit.broker import Mosquitto, TlsFiles
from testkit.mqttclient import TestClient
from testkit.postgres import STORE_KINDS, Postgres, shared
from testkit.serialpty import PtyPort

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain (anonymous) Mosquitto on a free loopback port, with persistence."""
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL (Debian's) for the session (``testkit.postgres.shared``), in a
    temporary directory on a free port; tests take fresh databases from it
    (``Postgres.fresh_db``, ``testkit.postgres.fresh_store_url``). A test that stops or
    restarts PostgreSQL starts its own ``Postgres`` instead."""
    yield shared()


@pytest.fixture(params=STORE_KINDS)
def hub_store(request: pytest.FixtureRequest) -> str:
    """The store kind for ``testkit.county.make_county(..., store=hub_store)``: a test
    taking it runs once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def site_passwords() -> dict[str, str]:
    """Generated passwords for the hub and two sites (never stored in the repo)."""
    return {u: secrets.token_urlsafe(12) for u in ("hub", "site-a", "site-b")}


@pytest.fixture
def auth_broker(tmp_path: Path, site_passwords: dict[str, str]) -> Iterator[Mosquitto]:
    """Mosquitto with a password file and the PROTOCOL.md §2 ACL."""
    with Mosquitto(tmp_path / "auth-broker", users=site_passwords) as b:
        yield b


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return TlsFiles.make(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Mosquitto]:
    """Mosquitto that requires a client certificate from the test CA (CN = user name)."""
    with Mosquitto(tmp_path / "tls-broker", tls=tls_files) as b:
        yield b


@pytest.fixture
def mqtt_client() -> Iterator[Callable[..., TestClient]]:
    """Factory for connected test clients; all are closed after the test."""
    made: list[TestClient] = []

    def make(broker: Mosquitto, **kw: Any) -> TestClient:
        c = TestClient(broker.host, broker.port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def pty_port() -> Iterator[PtyPort]:
    with PtyPort() as p:
        yield p


@pytest.fixture
def mock_pins() -> Iterator[Any]:
    """gpiozero's MockFactory as the pin factory for this test, reset afterwards."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    old = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = old


@pytest.fixture
def booking_platform() -> Iterator[BookingPlatform]:
    with BookingPlatform(page_size=50) as p:
        yield p


@pytest.fixture
def hub_key() -> Ed25519PrivateKey:
    """A fresh hub signing key (what signs the caches and commands a test sends a site)."""
    return Ed25519PrivateKey.generate()
