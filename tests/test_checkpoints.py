"""Checkpoint schedule, atomic layout, integrity checks, and save -> load -> identical logits."""

from __future__ import annotations

import json

import pytest
import torch

from interp import checkpoints
from interp.config import TrainConfig
from interp.errors import CheckpointError
from interp.train import train
from tests.conftest import tiny_config


def test_default_schedule__dense_early_even_later_and_at_least_60():
    steps = checkpoints.checkpoint_schedule(TrainConfig(steps=3000))
    assert len(steps) >= 60 and steps[0] == 0 and steps[-1] == 3000
    early = [s for s in steps if s <= 300]
    assert len(early) >= 20  # log-spaced: many checkpoints in the first tenth
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) <= 3000 / 40 + 1


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), run_dir, progress=False)
    return run_dir


def test_run_directory__layout_and_manifest(trained_run):
    found = checkpoints.list_checkpoints(trained_run)
    assert [c.step for c in found] == checkpoints.checkpoint_schedule(tiny_config().train)
    assert (trained_run / "config.json").is_file() and (trained_run / "metrics.h5").is_file()
    manifest = json.loads((found[-1].path / "manifest.json").read_text())
    assert set(manifest) == {"model.safetensors", "trainer.safetensors", "trainer.json"}
    assert checkpoints.run_status(trained_run) == "finished"
    assert not list(trained_run.glob(".*tmp*"))


def test_save_load__gives_identical_logits(trained_run):
    last = checkpoints.list_checkpoints(trained_run)[-1]
    loaded = checkpoints.load_model(last.path)
    again = checkpoints.load_model(trained_run)  # a run directory means its last checkpoint
    tokens = torch.randint(0, loaded.cfg.d_vocab, (2, loaded.cfg.n_ctx))
    torch.testing.assert_close(loaded(tokens), again(tokens), rtol=0, atol=0)
    assert loaded.cfg.d_vocab == 9  # resolved from the data (8 states + BOS) and saved


def test_load_model__never_unpickles(trained_run, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load (pickle) was called"))
    model = checkpoints.load_model(trained_run)
    assert model.W_Q.shape[0] == 2


def test_corrupted_checkpoint__fails_its_integrity_check(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    last = checkpoints.list_checkpoints(copy)[-1].path
    data = bytearray((last / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (last / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its integrity check"):
        checkpoints.load_model(last)
    assert checkpoints.last_good_checkpoint(copy).step < checkpoints.list_checkpoints(copy)[-1].step


def test_missing_run_and_foreign_directory__one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.load_model(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not an interp run directory"):
        checkpoints.load_model(tmp_path)


def test_half_written_checkpoint__is_invisible(trained_run):
    partial = trained_run / ".step_999999.tmp123"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"partial")
    assert all(c.step != 999999 for c in checkpoints.list_checkpoints(trained_run))
    partial_named = trained_run / "step_999998"
    partial_named.mkdir()  # no manifest: not complete
    assert all(c.step != 999998 for c in checkpoints.list_checkpoints(trained_run))
    checkpoints.remove_stale_temporaries(trained_run)
    assert not partial.exists()
    partial_named.rmdir()
