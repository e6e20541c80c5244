"""Config: presets, overrides, files, round trips, and refusals that list what is allowed."""

from __future__ import annotations

import json

import pytest

from interp.config import PRESETS, RunConfig, build_config, parse_overrides, preset
from interp.errors import ConfigError


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset__builds_and_round_trips_through_json(name):
    config = preset(name)
    assert RunConfig.from_json(config.to_json()) == config


def test_overrides__dotted_and_bare_names_and_types():
    config = build_config("default", None, ["model.n_layers=3", "lr=1e-3", "attn_only=false",
                                            "positional=rotary", "steps=2e3"])
    assert config.model.n_layers == 3 and config.train.lr == 1e-3 and config.train.steps == 2000
    assert config.model.attn_only is False and config.model.positional == "rotary"


def test_config_file__toml_json_and_yaml(tmp_path):
    (tmp_path / "a.toml").write_text("[model]\nn_layers = 1\n[train]\nlr = 0.01\n")
    (tmp_path / "b.json").write_text(json.dumps({"model": {"n_heads": 2}}))
    (tmp_path / "c.yaml").write_text("train:\n  batch_size: 4\n")
    assert build_config("default", str(tmp_path / "a.toml")).model.n_layers == 1
    assert build_config("default", str(tmp_path / "b.json")).model.n_heads == 2
    assert build_config("default", str(tmp_path / "c.yaml"), ["seed=3"]).train.batch_size == 4


@pytest.mark.parametrize("override, expected", [
    ("nosuch=1", "is not a config key; use one of: data.cache_dir"),
    ("model.nosuch=1", "unknown key 'nosuch' in section 'model'; allowed: act_fn"),
    ("seed=1.5", "train.seed must be an integer"),
    ("model.positional=alibi", "choose one of: learned, shortformer, rotary, none"),
    ("attn_only=perhaps", "must be true or false"),
    ("n_layers=0", "model.n_layers must be >= 1"),
    ("lr", "must look like key=value"),
    ("data.source=files", "needs data.path"),
])
def test_bad_overrides__are_refused_in_one_line_naming_the_fix(override, expected):
    with pytest.raises(ConfigError) as err:
        build_config("default", None, [override])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset_and_file_key__list_what_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match="choose one of: default, markov"):
        preset("gpt5")
    (tmp_path / "bad.toml").write_text("[model]\nlayers = 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['layers'\] in \[model\]"):
        build_config("default", str(tmp_path / "bad.toml"))
    with pytest.raises(ConfigError, match="not found"):
        build_config("default", str(tmp_path / "missing.toml"))


def test_parse_overrides__resolves_bare_names_to_their_section():
    assert parse_overrides(["batch_size=4"]) == {"train": {"batch_size": 4}}
