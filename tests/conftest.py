"""Shared fixtures: seeded runs, tiny configs built with overrides, a private token cache."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from interp.config import DataConfig, ModelConfig, RunConfig, TrainConfig


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Tests never touch the user's ~/.cache/interp.
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path_factory.getbasetemp() / "interp-cache"))


def tiny_config(**sections) -> RunConfig:
    """A 2-layer model on Markov chains small enough to train in about a second.

    ``sections`` are dicts of overrides per section: tiny_config(model={"n_layers": 1}).
    """
    base = RunConfig(
        model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=32),
        data=DataConfig(source="markov", markov_states=8),
        train=TrainConfig(steps=40, batch_size=8, lr=3e-3, warmup_steps=5, log_checkpoints=5,
                          linear_checkpoints=4, eval_examples=16, precision="fp32", log_every=5),
        preset="tiny",
    )
    return replace(base, **{name: replace(getattr(base, name), **values)
                            for name, values in sections.items()})


def make_analysed_run(base, name: str = "tiny"):
    """Train and analyse a tiny run under ``base/runs/name`` (token cache in ``base/cache``)."""
    from interp.analysis import AnalysisConfig, analyze_run
    from interp.train import train

    mp = pytest.MonkeyPatch()
    mp.setenv("INTERP_CACHE", str(base / "cache"))
    try:
        train(tiny_config(), base / "runs" / name, progress=False)
        analyze_run(base / "runs" / name,
                    AnalysisConfig(icl_examples=16, ablation_examples=8, pca_pairs=64, pattern_examples=8,
                                   prefix_sequences=8, precision="fp32"), progress=False)
    finally:
        mp.undo()
    return base / "runs"


def tiny_sweep_text(grid: str, seeds: str = "[0]", extra: str = "") -> str:
    """A sweep file over tiny Markov models (about a second per run); ``grid`` holds the
    indented ``field: [values]`` lines, ``extra`` more fixed config lines."""
    return ("preset: markov\nconfig:\n  model.d_model: 32\n  model.n_heads: 2\n  model.d_head: 16\n"
            "  model.n_ctx: 32\n  data.markov_states: 8\n  train:\n    steps: 30\n    batch_size: 8\n"
            "    log_checkpoints: 4\n    linear_checkpoints: 3\n    eval_examples: 16\n    precision: fp32\n"
            f"{extra}grid:\n{grid}seeds: {seeds}\n")


def write_phase_run(path, config: RunConfig, phase: dict, status: str = "finished",
                    steps=(10, 20, 30), analysed=None):
    """A synthetic run directory with no training: config.json, run.json with ``status``,
    checkpoints of empty files at ``steps`` (their manifest is complete, so they pass the
    integrity check, though they load no model), and a metrics.h5
    whose ``analysis`` group has rows for ``analysed`` (default: every step) and whose
    ``phase`` group has ``phase`` as attributes (no phase group when ``phase`` is empty)."""
    import json
    from pathlib import Path

    from interp import store

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(config.to_json())
    (path / "run.json").write_text(json.dumps({"status": status}))
    empty = {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "bytes": 0}
    for step in steps:
        checkpoint = path / f"step_{step:06d}"
        checkpoint.mkdir(exist_ok=True)
        for name in ("model.safetensors", "trainer.safetensors", "trainer.json"):
            (checkpoint / name).write_bytes(b"")
        (checkpoint / "manifest.json").write_text(json.dumps(dict.fromkeys(
            ("model.safetensors", "trainer.safetensors", "trainer.json"), empty)))
    done = list(steps if analysed is None else analysed)
    with store.update(path) as handle:
        if done:
            store.append(handle, "analysis", {"step": np.array(done), "tokens": np.array(done) * 256})
        if phase:
            handle.create_group("phase").attrs.update(phase)
    return path
