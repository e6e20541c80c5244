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
    with pytest.raises(ConfigError, match="choose one of: default, prose, prose-circuit, markov"):
        preset("gpt5")
    (tmp_path / "bad.toml").write_text("[model]\nlayers = 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['layers'\] in \[model\]"):
        build_config("default", str(tmp_path / "bad.toml"))
    with pytest.raises(ConfigError, match="not found"):
        build_config("default", str(tmp_path / "missing.toml"))


def test_parse_overrides__resolves_bare_names_to_their_section():
    assert parse_overrides(["batch_size=4"]) == {"train": {"batch_size": 4}}


# --------------------------------------------------------------------------- issue 12: absurd values

@pytest.mark.parametrize("override, expected", [
    ("lr=inf", "train.lr must be a finite number"),
    ("lr=nan", "train.lr must be a finite number"),
    ("lr=1e30", "train.lr must be in (0, 1]"),
    ("lr=-1e-3", "train.lr must be in (0, 1]"),
    ("steps=1e12", "train.steps=1,000,000,000,000 is beyond this workbench's limit"),
    ("steps=inf", "train.steps must be an integer, not inf"),
    ("seed=-1", "train.seed must be in [0, 2**32)"),
    ("threads=-1", "train.threads must be >= 0"),
    ("model.n_ctx=2", "model.n_ctx must be >= 8 for a run"),
    ("model.d_model=1e9", "model.d_model=1,000,000,000 is beyond"),
    ("model.n_layers=1e9", "model.n_layers=1,000,000,000 is beyond"),
    ("batch_size=1e9", "train.batch_size=1,000,000,000 is beyond"),
    ("data.vocab_size=1e9", "data.vocab_size=1,000,000,000 is beyond"),
    ("log_checkpoints=1e9", "train.log_checkpoints=1,000,000,000 is beyond"),
    ("model.init_std=inf", "model.init_std must be a finite number"),
    ("grad_clip=nan", "train.grad_clip must be a finite number"),
])
def test_absurd_values__refused_at_config_time_in_one_line(override, expected):
    # Catches: lr=inf training to NaN with exit 0, steps=1e12 and seed=-1 accepted, threads=-1
    # and n_ctx=2 failing mid-start with a traceback, sizes of 1e9 failing at allocation.
    with pytest.raises(ConfigError) as err:
        build_config("default", None, [override])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_model_too_large_in_total__refused_before_allocation():
    with pytest.raises(ConfigError, match="parameters, beyond this workbench's limit"):
        build_config("default", None, ["model.d_model=65536", "model.n_layers=256", "model.d_head=4096"])
    with pytest.raises(ConfigError, match="attention pattern"):
        build_config("default", None, ["model.n_ctx=65536"])


def test_yaml_numbers_without_a_dot__are_numbers(tmp_path):
    # Catches: YAML 1.1 reads 1e-3 as the string "1e-3", which was refused as "not a number".
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-3\n  steps: 2e3\nmodel:\n  init_std: 2E-2\n")
    config = build_config("default", str(tmp_path / "c.yaml"))
    assert config.train.lr == 1e-3 and config.train.steps == 2000 and config.model.init_std == 0.02
    (tmp_path / "d.yaml").write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="train.lr must be a number, not 'fast'"):
        build_config("default", str(tmp_path / "d.yaml"))


def test_presets_command__lists_every_preset_and_says_which_to_use(capsys):
    # Catches advice that names a preset or key that does not exist (it would fail when copied).
    from interp import cli
    from interp.config import PRESET_ADVICE

    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)
    for advice in PRESET_ADVICE:
        assert advice.data in out and advice.command() in out
        build_config(advice.preset, None, list(advice.overrides))  # a real preset and real keys



@pytest.mark.parametrize("name, model_change", [("prose", {"smeared_key": True}),
                                                ("prose-circuit", {"position_layers": 1})])
def test_prose_presets__are_default_plus_what_docs_presets_measured(name, model_change):
    # Catches a prose preset drifting from what docs/PRESETS.md measured: any other field
    # changed (a new default elsewhere would then need the prose runs measured again).
    from dataclasses import replace

    base, prose = preset("default"), preset(name)
    assert prose.model == replace(base.model, **model_change)
    assert prose.train == replace(base.train, until="phase", max_tokens=20_000_000)
    assert prose.data == base.data and prose.max_steps * prose.tokens_per_step <= 20_000_000
