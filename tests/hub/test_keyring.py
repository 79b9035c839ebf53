"""The hub's key ring step by step, without a broker (the acts of ``hub.core.keys`` on a real
store and real key files): what each step signs with and announces, that a delta never
crosses an announcement, the refusals (a second rotation, retiring too early, a missing
seed) changing nothing, and a crash between the store's switch and the key file's rewrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import config as config_mod
from hub.__main__ import main
from hub.core import Hub, open_hub
from hub.keyring import KeyRingError, kid_of
from testkit.booking_fake import BookingPlatform
from testkit.util import free_port
from tests.hub.test_provision import hub_config
from wire import envelope
from wire import messages as m
from wire.keys import public_key_b64, read_key_file, signing_key_from_seed, write_key_file

SITE = "minheim"
Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def cfg(tmp_path: Path, booking_platform: BookingPlatform, capsys: Capsys) -> config_mod.HubConfig:
    path = hub_config(tmp_path, base_url=booking_platform.base_url, token=booking_platform.token,
                      mqtt_port=free_port())
    assert main(["init", "--config", str(path)]) == 0
    assert main(["site", "add", SITE, "--config", str(path), "--broker-host", "mqtt.example"]) == 0
    capsys.readouterr()
    return config_mod.load(path)


def _opened(hub: Hub, site: str = SITE) -> tuple[str, m.CacheFull]:
    """The latest full cache as published: the kid that signed it, and its body."""
    data = hub.caches.signed(hub.caches.full_body(site))
    kid = m.decode(data, envelope.Envelope).kid
    pub = envelope.trusted_keys(*(signing_key_from_seed(read_key_file(f)).public_key()
                                  for f in hub.keyring.dir.glob("*.key")))
    body = envelope.open_body(data, pub, site)
    assert isinstance(body, m.CacheFull)
    return kid, body


def _acknowledge(hub: Hub, *, old_software: bool = False, trusts: list[str] | None = None) -> None:
    """The site reports the version announced to it, in its Status (with the keys it trusts:
    those announced unless ``trusts`` says otherwise; none when it runs software from before
    key rotation)."""
    rollout = hub._store.key_rollout(SITE)
    assert rollout is not None
    keys = m.UNSET if old_software else list(rollout.keys) if trusts is None else trusts
    hub._store.record_status(SITE, m.Status(state="online", ts=1.0, cache_version=rollout.version, keys=keys), 1.0)


def test_each_step_signs_and_announces_what_it_should(cfg: config_mod.HubConfig) -> None:
    configured = Path(cfg.hub.signing_key_file)
    old = signing_key_from_seed(read_key_file(configured))
    with open_hub(cfg) as hub:
        hub.caches.rebuild(SITE, 1_800_000_000)
        before = hub.caches.latest_version(SITE)
        assert before is not None
        assert hub.key_status().keys == [] and hub.keys_step() is None
        data = hub.caches.signed(hub.caches.full_body(SITE))
        assert b'"keys"' not in envelope.open_envelope(data, envelope.trusted_keys(old.public_key()))

        # 1. rotate: signed by the old key, naming both; no delta leads across the announcement.
        new_row, versions = hub.rotate_key()
        assert versions[SITE] > before
        new_file = hub.keyring.key_file(new_row.kid)
        assert new_file.stat().st_mode & 0o777 == 0o600
        new = signing_key_from_seed(read_key_file(new_file))
        kid, body = _opened(hub)
        assert kid == kid_of(old) and body.keys == [public_key_b64(old), public_key_b64(new)]
        assert hub.caches.delta_body(SITE, before) is None
        with pytest.raises(KeyRingError, match="a rotation is in progress"):
            hub.rotate_key()
        with pytest.raises(KeyRingError, match="still being announced"):
            hub.retire_key()
        assert hub.keys_step() is None  # the site has not acknowledged: no switch
        assert [k.state for k in hub._store.signing_keys()] == ["signing", "next"]

        # 2. acknowledged: the new key signs and is announced alone; the configured file follows.
        _acknowledge(hub)
        assert "it signs from now on" in (hub.keys_step() or "")
        kid, body = _opened(hub)
        assert kid == new_row.kid and body.keys == [public_key_b64(new)]
        assert kid_of(signing_key_from_seed(read_key_file(configured))) == new_row.kid
        with pytest.raises(KeyRingError, match=f"sites still need key {kid_of(old)}: {SITE}"):
            hub.retire_key()

    # A crash after the store's switch but before the file's rewrite: the ring signs by kid,
    # and the next step puts the right key back into the configured file.
    write_key_file(configured, read_key_file(hub.keyring.key_file(kid_of(old))), overwrite=True)
    with open_hub(cfg) as hub:
        assert _opened(hub)[0] == new_row.kid
        hub.keys_step()
        assert kid_of(signing_key_from_seed(read_key_file(configured))) == new_row.kid

        # 3. retire, once the site holds a cache naming the new key alone.
        _acknowledge(hub)
        assert hub.retire_key().kid == kid_of(old)
        assert not hub.keyring.key_file(kid_of(old)).exists()
        assert [k.state for k in hub._store.signing_keys()] == ["retired", "signing"]
        with pytest.raises(KeyRingError, match="no previous key"):
            hub.retire_key()
        kid, body = _opened(hub)
        assert kid == new_row.kid and body.keys == [public_key_b64(new)]


def test_a_site_too_old_to_report_its_keys_holds_the_switch_back(cfg: config_mod.HubConfig,
                                                                    capsys: Capsys) -> None:
    with open_hub(cfg) as hub:
        hub.caches.rebuild(SITE, 1_800_000_000)
        hub.rotate_key()
        _acknowledge(hub, old_software=True)  # it holds the version, but would ignore the keys in it
        assert hub.keys_step() is None
        assert hub.key_status().waiting == [SITE]
        assert [k.state for k in hub._store.signing_keys()] == ["signing", "next"]
    assert main(["keys", "status", "--config", str(cfg.hub.data_path.parent / "hub.toml")]) == 0
    assert "NO (software too old or never seen)" in capsys.readouterr().out
    with open_hub(cfg) as hub:
        _acknowledge(hub)
        assert "it signs from now on" in (hub.keys_step() or "")


def test_a_site_at_the_version_that_does_not_trust_the_new_key_holds_the_switch_back(
        cfg: config_mod.HubConfig) -> None:
    """Holding the announcing version is not enough: e.g. a full cache built by another node
    just before the ring changed reached that version without naming the keys, or the site
    fell back to its configured key. It must say it trusts every announced key."""
    with open_hub(cfg) as hub:
        hub.caches.rebuild(SITE, 1_800_000_000)
        hub.rotate_key()
        rollout = hub._store.key_rollout(SITE)
        assert rollout is not None and len(rollout.keys) == 2
        _acknowledge(hub, trusts=[rollout.keys[0]])  # the old key only
        assert hub.keys_step() is None and hub.key_status().waiting == [SITE]
        _acknowledge(hub)
        assert "it signs from now on" in (hub.keys_step() or "")


def test_a_revoked_site_holds_neither_the_switch_nor_the_retirement_back(
        cfg: config_mod.HubConfig, capsys: Capsys) -> None:
    """A stolen Pi, revoked: it never acknowledges anything again, and must not keep the
    whole county on the old key until someone edits it out of the config."""
    path = str(cfg.hub.data_path.parent / "hub.toml")
    with open_hub(cfg) as hub:
        hub.caches.rebuild(SITE, 1_800_000_000)
        hub.rotate_key()
        assert hub.keys_step() is None and hub.key_status().waiting == [SITE]
    assert main(["site", "revoke", SITE, "--config", path]) == 0
    capsys.readouterr()
    with open_hub(cfg) as hub:
        assert hub.key_status().waiting == []
        assert "it signs from now on" in (hub.keys_step() or "")
        assert hub.retire_key().kid != hub.keyring.phase().signing.kid  # type: ignore[union-attr]
        assert [k.state for k in hub._store.signing_keys()] == ["retired", "signing"]
    assert main(["keys", "status", "--config", path]) == 0
    assert "no (revoked: holds nothing back)" in capsys.readouterr().out


def test_a_missing_seed_is_named_and_nothing_is_signed(cfg: config_mod.HubConfig) -> None:
    with open_hub(cfg) as hub:
        hub.caches.rebuild(SITE, 1_800_000_000)
        row, _ = hub.rotate_key()
        _acknowledge(hub)
        hub.keys_step()
    configured = Path(cfg.hub.signing_key_file)
    configured.unlink()
    (configured.parent / "signing-keys" / f"{row.kid}.key").unlink()
    write_key_file(configured, b"\x01" * 32)  # some other key in the configured file
    with open_hub(cfg) as hub, pytest.raises(KeyRingError, match=f"signing key {row.kid} is in neither"):
        hub.caches.signed(hub.caches.full_body(SITE))
