"""A site's life: join codes, joining and renewal, revocation, reinstatement and removal
(the files and the crypto: hub/provision/fleet.py; the broker session: hub/link.evict)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from wire import join as wj
from wire.topics import Kind, topic

from ..link import evict
from ..provision import fleet
from ..store.fleet import SiteCert
from .base import Base

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CertLine:
    """A site's current certificate as ``torwart-hub sites`` shows it."""

    site_id: str
    state: str
    serial: str | None
    not_after: float | None
    expiring: bool


class Fleet(Base):
    """Join codes, join and renewal answers, revoke / reinstate / remove."""

    def issue_join_code(self, site_id: str, *, broker_host: str, broker_port: int | None, tls: bool,
                        hours: float = fleet.DEFAULT_CODE_HOURS, now: float | None = None) -> str:
        self.site(site_id)
        return fleet.issue_code(self.cfg, self._store, site_id, broker_host=broker_host, broker_port=broker_port,
                                tls=tls, hours=hours, now=time.time() if now is None else now)

    def answer_join(self, req: wj.JoinRequest, now: float) -> wj.JoinAnswer:
        return fleet.answer_join(self.cfg, self._store, req, now)

    def answer_renew(self, req: wj.RenewRequest, now: float) -> wj.RenewAnswer:
        return fleet.answer_renew(self.cfg, self._store, req, now)

    def site_state(self, site_id: str) -> str:
        return self._store.site_lifecycle().get(site_id, ("active", 0.0))[0]

    def revoke_site(self, site_id: str, *, state: str = "revoked", now: float | None = None) -> list[str]:
        """Lock a site out (``fleet.revoke``), then throw its live session off the broker
        (twice: a reconnect racing the broker's reload is thrown off by the second)."""
        self.site(site_id)
        now = time.time() if now is None else now
        done = fleet.revoke(self.cfg, self._store, site_id, now, state=state)
        if self.link is not None:
            self.link.blocked = self.blocked_sites()
        kicked = evict(self.cfg.mqtt, site_id) and evict(self.cfg.mqtt, site_id, delay=2.0)
        # A login the broker drops on reload leaves without its will (Mosquitto treats it as a
        # clean disconnect): record it offline here.
        if (st := self._store.site_state(site_id)) is not None and st.online:
            self._store.update_site_state(site_id, {"online": False, "since": now})
        done.append("its broker session was closed and dropped" if kicked
                    else "could not reach the broker to close its session (it ends at the broker's reload)")
        return done

    def reinstate_site(self, site_id: str, *, broker_host: str, broker_port: int | None, tls: bool,
                       hours: float = fleet.DEFAULT_CODE_HOURS) -> str:
        """A revoked or removed site may join again: a new join code (its old certificates
        stay revoked; the new Pi makes a new key pair)."""
        self.site(site_id)
        now = time.time()
        self._store.set_site_state(site_id, "active", at=now)
        if self.link is not None:
            self.link.blocked = self.blocked_sites()
        return self.issue_join_code(site_id, broker_host=broker_host, broker_port=broker_port, tls=tls, hours=hours,
                                    now=now)

    def remove_site(self, site_id: str) -> list[str]:
        """Decommission: revoked, its retained cache at the broker cleared, its published
        caches dropped from the store (``Store.drop_site_caches``; the running hub builds
        none for a removed site). Its events stay until retention purges them."""
        done = self.revoke_site(site_id, state="removed")
        cleared = self._clear_retained(site_id)
        done.append("its retained cache at the broker was cleared" if cleared
                    else "could not clear its retained cache at the broker (the running hub does not publish it)")
        dropped = self._store.drop_site_caches(site_id)
        done.append(f"its caches were dropped from the store (latest version {dropped.version}, "
                    f"{dropped.n_entries} entries)" if dropped is not None else "it had no cache in the store")
        return done

    def _clear_retained(self, site_id: str) -> bool:
        from ..link import HubLink

        link = self.link
        own = link is None
        if link is None:
            link = HubLink(self.cfg.mqtt, None, client_id=f"{self.cfg.mqtt.client_id}-remove", persistent=False)
            link.start()
        try:
            if not link.wait_connected(10):
                return False
            return link.publish_topic(topic(site_id, Kind.CACHE), b"", retain=True, wait=5.0)
        finally:
            if own:
                link.stop()

    def record_cert(self, site_id: str, cert_file: Path, *, how: str) -> None:
        """Record a certificate issued outside a join (``site add --bundle``), so that
        revoking the site puts it in the CRL."""
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        self._store.add_site_cert(SiteCert(serial=str(cert.serial_number), site_id=site_id, issued_at=time.time(),
                                           not_after=cert.not_valid_after_utc.timestamp(), how=how))

    def cert_lines(self, now: float) -> dict[str, CertLine]:
        """Each configured site's newest certificate and state."""
        certs: dict[str, SiteCert] = {}
        for c in self._store.site_certs():
            if c.revoked_at is None:
                certs[c.site_id] = c
        states = self._store.site_lifecycle()
        out = {}
        for site in self.cfg.sites:
            cert = certs.get(site.id)
            state = states.get(site.id, ("active", 0.0))[0]
            expiring = cert is not None and state == "active" and cert.not_after - now < fleet.EXPIRY_WARNING_SECONDS
            out[site.id] = CertLine(site.id, state, cert.serial if cert else None,
                                    cert.not_after if cert else None, expiring)
        return out
