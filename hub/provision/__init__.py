"""Provisioning: the hub's own keys, CA and broker files (``hub_init``: ``torwart-hub init``),
a new site's keys, broker login, certificate and ``site.toml`` bundle (``site``:
``torwart-hub site add``), the small CA (``pki``) and Mosquitto's password and ACL
formats (``mosquitto``); a site's life without carried keys (``fleet``: join codes, the join and
renewal answers, the CRL, revocation)."""

from __future__ import annotations

from .hub_init import (
    BrokerFiles,
    ProvisionError,
    broker_files,
    ca_paths,
    crl_path,
    enroll_key_path,
    hub_mqtt_user,
    hub_password_lines,
    init,
)
from .site import SiteBundle, site_add

__all__ = [
    "BrokerFiles",
    "ProvisionError",
    "SiteBundle",
    "broker_files",
    "ca_paths",
    "crl_path",
    "enroll_key_path",
    "hub_mqtt_user",
    "hub_password_lines",
    "init",
    "site_add",
]
