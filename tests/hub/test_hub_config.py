"""The hub's config: a valid file loads with paths resolved and defaults filled in; every
mistake is refused with the file and the key named."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hub import config
from hub.errors import ConfigError, HubError
from wire.keys import new_key, write_key_file

SITE = """
[[sites]]
id = "minheim"
name = "Dorfhaus Minheim"
cred_key_file = "keys/minheim.key"

[[sites.rooms]]
id = "cowork"
name = "Coworking"
capacity = 8
resources = ["res-cowork"]
doors = ["main", "cowork"]

[[sites.rooms]]
id = "meeting"
resources = ["res-meeting", "res-meeting-half"]
doors = ["main", "meeting"]
"""


def write_hub_config(tmp_path: Path, sites: str = SITE, *, booking: str | None = None, extra: str = "") -> Path:
    """A complete hub config in ``tmp_path`` with freshly generated 0600 key files."""
    keys = tmp_path / "keys"
    for name in ("signing", "minheim", "altdorf"):
        if not (keys / f"{name}.key").exists():
            write_key_file(keys / f"{name}.key", new_key())
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    token = secrets / "token"
    if not token.exists():
        token.write_text("generated-token\n")
        token.chmod(0o600)
    if booking is None:
        booking = """
            [booking]
            adapter = "rest"
            base_url = "https://platform.example"
            token_file = "secrets/token"
        """
    text = textwrap.dedent("""
        [hub]
        data_dir = "data"
        signing_key_file = "keys/signing.key"

        [mqtt]
        host = "127.0.0.1"
    """) + textwrap.dedent(booking) + textwrap.dedent(extra) + textwrap.dedent(sites)
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def refused(path: Path, *, check_files: bool = True) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(path, check_files=check_files)
    assert isinstance(info.value, HubError)
    assert str(path) in str(info.value)
    return info.value


def test_valid_config_loads_with_paths_resolved_and_defaults(tmp_path: Path) -> None:
    cfg = config.load(write_hub_config(tmp_path))
    assert cfg.hub.data_dir == str(tmp_path / "data")
    assert cfg.hub.signing_key_file == str(tmp_path / "keys" / "signing.key")
    assert cfg.hub.cache_valid_hours == 48
    assert cfg.hub.retention_days == 90
    assert cfg.hub.full_refresh_fraction == 0.25
    assert cfg.mqtt.effective_port == 1883
    assert cfg.mqtt.client_id == "torwart-hub"
    assert cfg.mqtt.shared_subscription is False
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8080)
    assert cfg.booking.sync_interval_seconds == 60
    assert (cfg.booking.grace_before_minutes, cfg.booking.grace_after_minutes, cfg.booking.horizon_days) == (15, 15, 7)
    site = cfg.site("minheim")
    assert site.cred_key_file == str(tmp_path / "keys" / "minheim.key")
    # A site's doors default to the union of its rooms' doors, in order.
    assert site.doors == ["main", "cowork", "meeting"]
    assert cfg.resource_map() == {
        "res-cowork": ("minheim", "cowork"),
        "res-meeting": ("minheim", "meeting"),
        "res-meeting-half": ("minheim", "meeting"),
    }
    assert config.site_key(cfg, "minheim") == config.site_key(cfg, "minheim")
    assert len(config.site_key(cfg, "minheim")) == 32
    config.signing_key(cfg).sign(b"x")
    assert config.read_secret(cfg.booking.token_file or "") == "generated-token"


def test_ipv6_listen_address_parses(tmp_path: Path) -> None:
    cfg = config.load(write_hub_config(tmp_path, extra='[http]\nlisten = "[::1]:9000"\n'))
    assert (cfg.http.host, cfg.http.port) == ("::1", 9000)


@pytest.mark.parametrize("listen", ["8080", "localhost", "host:99999", "::1:80", ":80"])
def test_malformed_listen_is_refused(tmp_path: Path, listen: str) -> None:
    err = refused(write_hub_config(tmp_path, extra=f'[http]\nlisten = "{listen}"\n'))
    assert err.key == "http.listen"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path, extra="[http]\nlisten = \"127.0.0.1:1\"\nlisten_port = 5\n")
    err = refused(path)
    assert err.key == "http.listen_port"
    assert "unknown key" in str(err)


def test_unknown_key_in_a_room_is_named(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, SITE.replace("capacity = 8", "capacity = 8\ncapacty = 9")))
    assert err.key == "sites[0].rooms[0].capacty"


def test_bad_identifier_is_refused(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, SITE.replace('id = "minheim"', 'id = "Minheim"')))
    assert err.key == "sites[0].id"


def test_bad_door_identifier_is_refused(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, SITE.replace('"main", "cowork"', '"main", "Cowork Door"')))
    assert err.key == "sites[0].rooms[0].doors[1]"


def test_duplicate_site_is_refused(tmp_path: Path) -> None:
    second = SITE.replace("res-", "other-")
    err = refused(write_hub_config(tmp_path, SITE + second))
    assert err.key == "sites[1].id"
    assert "twice" in str(err)


def test_a_site_may_not_take_the_hubs_broker_user_name(tmp_path: Path) -> None:
    # The ACL gives that user every site's topics: a site by that name would have them too.
    err = refused(write_hub_config(tmp_path, SITE.replace('id = "minheim"', 'id = "hub"')))
    assert err.key == "sites[0].id" and "broker user" in str(err)
    path = write_hub_config(tmp_path / "named")
    path.write_text(path.read_text().replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nusername = "minheim"'))
    err = refused(path)
    assert err.key == "sites[0].id" and "broker user" in str(err)


def test_a_site_may_not_take_a_client_id_of_the_hub(tmp_path: Path) -> None:
    # The broker makes each site's id its client id: a site named like one of the hub's
    # client ids would throw the hub (or its command line) off whenever it connects.
    for n, site_id in enumerate(("torwart-hub", "torwart-hub-cli-1")):
        err = refused(write_hub_config(tmp_path / str(n), SITE.replace('id = "minheim"', f'id = "{site_id}"')))
        assert err.key == "sites[0].id" and "client id of the hub" in str(err), site_id
    path = write_hub_config(tmp_path / "own-id")
    path.write_text(path.read_text().replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nclient_id = "minheim"'))
    err = refused(path)
    assert err.key == "sites[0].id" and "client id of the hub" in str(err)


def test_duplicate_room_in_a_site_is_refused(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, SITE.replace('id = "meeting"', 'id = "cowork"')))
    assert err.key == "sites[0].rooms[1].id"


def test_resource_mapped_to_two_rooms_is_refused(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, SITE.replace('"res-meeting",', '"res-cowork",')))
    assert err.key == "sites[0].rooms[1].resources[0]"
    assert "res-cowork" in str(err)


def test_resource_mapped_in_two_sites_is_refused(tmp_path: Path) -> None:
    other = SITE.replace('"minheim"', '"altdorf"').replace("keys/minheim", "keys/altdorf").replace(
        '"res-meeting", "res-meeting-half"', '"res-x"')
    err = refused(write_hub_config(tmp_path, SITE + other))
    assert err.key == "sites[1].rooms[0].resources[0]"


def test_room_without_resources_is_refused_for_rest(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, SITE.replace('resources = ["res-cowork"]\n', "")))
    assert err.key == "sites[0].rooms[0].resources"
    assert "no platform resource" in str(err)


def test_room_door_outside_the_sites_doors_is_refused(tmp_path: Path) -> None:
    key = 'cred_key_file = "keys/minheim.key"'
    sites = SITE.replace(key, key + '\ndoors = ["main", "cowork"]')
    err = refused(write_hub_config(tmp_path, sites))
    assert err.key == "sites[0].rooms[1].doors"


def test_rest_adapter_needs_base_url(tmp_path: Path) -> None:
    booking = '[booking]\nadapter = "rest"\ntoken_file = "secrets/token"\n'
    err = refused(write_hub_config(tmp_path, booking=booking))
    assert err.key == "booking.base_url"


def test_rest_adapter_needs_token_file(tmp_path: Path) -> None:
    booking = '[booking]\nadapter = "rest"\nbase_url = "https://p.example"\n'
    assert refused(write_hub_config(tmp_path, booking=booking)).key == "booking.token_file"


def test_unknown_adapter_is_refused(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, booking='[booking]\nadapter = "soap"\n'))
    assert err.key == "booking.adapter"


def test_ics_adapter_needs_a_feed_per_room(tmp_path: Path) -> None:
    err = refused(write_hub_config(tmp_path, booking='[booking]\nadapter = "ics"\n'))
    assert err.key == "sites[0].rooms[0].ics_url"


def test_ics_rooms_without_resources_get_a_synthetic_one(tmp_path: Path) -> None:
    sites = SITE.replace('resources = ["res-cowork"]', 'ics_url = "https://cal.example/cowork.ics"').replace(
        'resources = ["res-meeting", "res-meeting-half"]', 'ics_url = "https://cal.example/meeting.ics"')
    cfg = config.load(write_hub_config(tmp_path, sites, booking='[booking]\nadapter = "ics"\n'))
    assert cfg.site("minheim").room("cowork").resources == ["ics:minheim/cowork"]
    assert cfg.resource_map()["ics:minheim/meeting"] == ("minheim", "meeting")


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path)
    os.chmod(tmp_path / "keys" / "minheim.key", 0o644)
    err = refused(path)
    assert err.key == "sites[0].cred_key_file"
    assert "chmod 600" in str(err)
    # Tools that only inspect the config can skip the file checks.
    assert config.load(path, check_files=False).site("minheim").id == "minheim"


def test_signing_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path)
    os.chmod(tmp_path / "keys" / "signing.key", 0o644)
    assert refused(path).key == "hub.signing_key_file"


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path)
    (tmp_path / "keys" / "minheim.key").unlink()
    err = refused(path)
    assert err.key == "sites[0].cred_key_file"
    assert "does not exist" in str(err)


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path)
    os.chmod(tmp_path / "secrets" / "token", 0o640)
    err = refused(path)
    assert err.key == "booking.token_file"
    assert "chmod 600" in str(err)


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    extra = '[mqtt]\nhost = "h"\ncert_file = "c.pem"\n'
    path = write_hub_config(tmp_path)
    path.write_text(path.read_text().replace('[mqtt]\nhost = "127.0.0.1"\n', extra))
    assert refused(path).key == "mqtt.cert_file"


def test_missing_required_section_is_named(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path)
    path.write_text(path.read_text().replace('[mqtt]\nhost = "127.0.0.1"\n', ""))
    assert refused(path).key == "mqtt"


def test_out_of_range_value_is_named(tmp_path: Path) -> None:
    path = write_hub_config(tmp_path)
    path.write_text(path.read_text().replace('data_dir = "data"', 'data_dir = "data"\ncache_valid_hours = 0'))
    assert refused(path).key == "hub.cache_valid_hours"


def test_site_no_show_overrides_the_default(tmp_path: Path) -> None:
    booking = ('[booking]\nadapter = "rest"\nbase_url = "https://p.example"\ntoken_file = "secrets/token"\n'
               "no_show_minutes = 30\n")
    sites = SITE.replace('name = "Dorfhaus Minheim"', 'name = "Dorfhaus Minheim"\nno_show_minutes = 20')
    cfg = config.load(write_hub_config(tmp_path, sites, booking=booking))
    assert cfg.no_show_minutes("minheim") == 20


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[hub\n")
    err = refused(path)
    assert err.key is None
    assert "not valid TOML" in str(err)
