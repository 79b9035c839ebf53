"""Fuzzing the configuration files: random TOML documents, and mutations of the shipped
site configs (firmware_configs/sites/*.toml) and of a valid hub config, into edge.config.load
and hub.config.load. Either the file loads, or a ConfigError names the file (and the key
when there is one): nothing else may escape. Through the command lines that is exit
status 2 (both CLIs)."""

from __future__ import annotations

import contextlib
import io
import random
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import config as edge_config
from edge.__main__ import main as edge_main
from edge.errors import ConfigError as EdgeConfigError
from hub import config as hub_config
from hub.__main__ import main as hub_main
from hub.errors import ConfigError as HubConfigError
from tests.hub.test_hub_config import write_hub_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "firmware_configs" / "sites").glob("*.toml"))
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SCALARS = (st.text(max_size=12) | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True)
           | st.booleans())
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), inner,
                                                                         max_size=3), max_leaves=10)
KEYS = st.sampled_from(["site", "hub", "policy", "doors", "readers", "rooms", "id", "data_dir", "lock_pin",
                        "mqtt", "http", "booking", "sites", "port", "host", "signing_key_file"]) | st.text(
    min_size=1, max_size=8)
DOCS = st.dictionaries(KEYS, VALUES, max_size=6)


def _mutate_doc(rng: random.Random, doc: Any, depth: int = 0) -> Any:
    """Change one thing somewhere in a parsed TOML document."""
    if isinstance(doc, dict) and doc:
        key = rng.choice(sorted(doc))
        how = rng.random()
        if how < 0.25:
            del doc[key]
        elif how < 0.5 or depth > 3:
            doc[key] = rng.choice([0, -1, 2**40, "", "x" * 300, "../../etc/passwd", True, 1.5, [], {}, ["a", 1],
                                   "GPIO99", "Mars/Phobos", "25:99", "ntp ", "safe", 17])
        elif how < 0.6:
            doc[f"unknown_{rng.randint(0, 9)}"] = "surprise"
        else:
            doc[key] = _mutate_doc(rng, doc[key], depth + 1)
        return doc
    if isinstance(doc, list) and doc:
        i = rng.randrange(len(doc))
        if rng.random() < 0.3:
            doc.append(doc[i])  # a duplicate door, reader or room
        else:
            doc[i] = _mutate_doc(rng, doc[i], depth + 1)
        return doc
    return rng.choice([None, "", 0, -5, "?"]) if doc is not None else 1


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    how = rng.randrange(5)
    if how == 0:
        del lines[i]
    elif how == 1:
        lines.insert(i, lines[i])
    elif how == 2 and "=" in lines[i]:
        k, _, _ = lines[i].partition("=")
        lines[i] = k + "= " + rng.choice(["", "[", "1e999", '"unterminated', "{a=1}", "0x1G", "true false"])
    elif how == 3:
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    else:
        lines[i] = "".join(chr(ord(c) ^ 1) if rng.random() < 0.1 else c for c in lines[i])
    return "\n".join(lines) + "\n"


def _loads_or_config_error(load: Any, path: Path, error: type[Exception], **kw: Any) -> None:
    try:
        load(path, **kw)
    except error as exc:
        assert str(path) in str(exc) or path.name in str(exc), f"the error does not name the file: {exc}"


@FUZZ
@given(doc=DOCS)
def test_random_toml_documents_are_refused_with_a_config_error_only(tmp_path: Path, doc: dict[str, Any]) -> None:
    p = tmp_path / "random.toml"
    try:
        p.write_text(tomli_w.dumps(doc))
    except (TypeError, ValueError):
        p.write_text(str(doc))  # not TOML at all
    _loads_or_config_error(edge_config.load, p, EdgeConfigError)
    _loads_or_config_error(hub_config.load, p, HubConfigError)


@pytest.mark.parametrize("shipped", SHIPPED, ids=[p.name for p in SHIPPED])
@FUZZ
@given(seed=st.integers(0, 2**32), text_level=st.booleans())
def test_mutated_shipped_site_configs_load_or_name_what_is_wrong(tmp_path: Path, shipped: Path, seed: int,
                                                                 text_level: bool) -> None:
    rng = random.Random(seed)
    text = shipped.read_text()
    if text_level:
        text = _mutate_text(rng, text)
    else:
        doc = _mutate_doc(rng, tomllib.loads(text))
        try:
            text = tomli_w.dumps(doc)
        except (TypeError, ValueError):
            return
    p = tmp_path / shipped.name
    p.write_text(text)
    _loads_or_config_error(edge_config.load, p, EdgeConfigError, check_files=False)
    _loads_or_config_error(edge_config.load, p, EdgeConfigError)


@FUZZ
@given(seed=st.integers(0, 2**32), text_level=st.booleans())
def test_mutated_hub_configs_load_or_name_what_is_wrong(tmp_path: Path, seed: int, text_level: bool) -> None:
    rng = random.Random(seed)
    good = write_hub_config(tmp_path)
    text = good.read_text()
    if text_level:
        text = _mutate_text(rng, text)
    else:
        try:
            text = tomli_w.dumps(_mutate_doc(rng, tomllib.loads(text)))
        except (TypeError, ValueError):
            return
    good.write_text(text)
    _loads_or_config_error(hub_config.load, good, HubConfigError)


def test_bad_configs_exit_with_status_2_through_both_command_lines(tmp_path: Path) -> None:
    rng = random.Random(7)
    site = tmp_path / "site.toml"
    hub = write_hub_config(tmp_path / "hub")
    broken_site = [_mutate_text(rng, SHIPPED[0].read_text()) for _ in range(6)] + ["[site\n", "site = 5\n", ""]
    broken_hub = ['[hub]\ndata_dir = 5\n', "[[sites]]\nid = 'X'\n", "not toml = = =\n",
                  hub.read_text().replace('adapter = "rest"', 'adapter = "carrier-pigeon"')]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        for text in broken_site:
            site.write_text(text)
            try:
                edge_config.load(site)
            except EdgeConfigError:
                assert edge_main(["check", "--config", str(site)]) == 2
        for text in broken_hub:
            hub.write_text(text)
            assert hub_main(["sites", "--config", str(hub)]) == 2
    assert "config error" in err.getvalue()
