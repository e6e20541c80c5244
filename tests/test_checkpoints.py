"""Checkpoint schedule, atomic layout, integrity checks, and save -> load -> identical logits."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from interp import checkpoints
from interp.config import TrainConfig
from interp.errors import CheckpointError
from interp.model import Transformer
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
    assert set(manifest) == {"model.safetensors", "trainer.safetensors", "trainer.json", "eval.safetensors"}
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


# --------------------------------------------------------------------------- issue 12: manifests and loads

FILES = ("model.safetensors", "trainer.safetensors", "trainer.json")


def copy_run(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    return copy


def write_manifest(checkpoint, manifest) -> None:
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def entry(checkpoint, name):
    return json.loads((checkpoint / "manifest.json").read_text())[name]


@pytest.mark.parametrize("make", [
    lambda c: {},
    lambda c: [],
    lambda c: "sha",
    lambda c: {name: entry(c, name) for name in FILES[:2]},  # trainer.json missing
    lambda c: {**{name: entry(c, name) for name in FILES}, "trainer.json": {"sha256": "x"}},
    lambda c: {**{name: entry(c, name) for name in FILES},
               "model.safetensors": {**entry(c, "model.safetensors"), "bytes": "12"}},
], ids=["empty-object", "list", "string", "missing-entry", "entry-without-bytes", "bytes-as-string"])
def test_incomplete_manifest__is_invalid_not_a_pass(trained_run, tmp_path, make):
    # Catches: a manifest {} that passed the check whatever the files held, and a manifest []
    # that stopped analyze with AttributeError.
    last = checkpoints.list_checkpoints(copy_run(trained_run, tmp_path))[-1].path
    write_manifest(last, make(last))
    with pytest.raises(CheckpointError, match="invalid manifest.json"):
        checkpoints.verify_checkpoint(last)


def truncate(file) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def test_resume__falls_back_past_checkpoints_that_do_not_load(trained_run, tmp_path, caplog):
    # Catches: manifest {} + a truncated weight file -> SafetensorError on resume, no fallback;
    # a checkpoint of another shape with a valid manifest -> size-mismatch traceback.
    import logging
    import shutil

    from safetensors.torch import load_file, save_file

    run = copy_run(trained_run, tmp_path)
    found = checkpoints.list_checkpoints(run)
    for later in found[-2:]:  # as if interrupted before the last two checkpoints
        shutil.rmtree(later.path)
    newest, second = found[-3].path, found[-4].path
    truncate(newest / "model.safetensors")
    write_manifest(newest, {})
    weights = load_file(second / "model.safetensors")
    weights["embed.W_E"] = torch.zeros(3, 3)  # another shape, with a manifest that matches it
    save_file(weights, second / "model.safetensors")
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["model.safetensors"] = {"sha256": checkpoints._sha256(second / "model.safetensors"),
                                     "bytes": (second / "model.safetensors").stat().st_size}
    write_manifest(second, manifest)
    with caplog.at_level(logging.WARNING, logger="interp"):
        train(None, run, resume=True, progress=False)
    notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(notes) == 1 and f"resuming from step {found[-5].step}" in notes[0], notes
    a, b = (load_file(checkpoints.list_checkpoints(r)[-1].path / "model.safetensors") for r in (trained_run, run))
    assert all((a[k] == b[k]).all() for k in a)  # the same weights as the run never interrupted


def wider_weights(run, checkpoint) -> None:
    """Replace a checkpoint by one of a wider model, with a manifest that matches it."""
    other = Transformer(replace(checkpoints.read_config(run).model, d_model=48))
    checkpoints.save_checkpoint(run, other, torch.optim.AdamW(other.parameters()), {"step": checkpoint.step})


def nan_weights(run, checkpoint) -> None:
    """Replace a checkpoint by one whose weights are NaN, as a diverged run wrote them."""
    model = checkpoints.load_model(checkpoint.path)
    with torch.no_grad():
        model.blocks[0].attn.W_Q.fill_(float("nan"))
    checkpoints.save_checkpoint(run, model, torch.optim.AdamW(model.parameters()), {"step": checkpoint.step})


@pytest.mark.parametrize("damage, expected", [
    (nan_weights, "holds non-finite weights (blocks.0.attn.W_Q)"),
    (lambda run, c: write_manifest(c.path, []), "invalid manifest.json"),
    (lambda run, c: (truncate(c.path / "model.safetensors"), write_manifest(c.path, {})), "invalid manifest.json"),
    (wider_weights, "does not fit its run's config.json"),
], ids=["nan-weights", "list-manifest", "truncated-with-empty-manifest", "another-shape"])
def test_analyze__skips_a_checkpoint_that_does_not_load_with_one_line(trained_run, tmp_path, damage, expected):
    from interp.analysis import AnalysisConfig, analyze_run

    run = copy_run(trained_run, tmp_path)
    (run / "metrics.h5").unlink()
    bad = checkpoints.list_checkpoints(run)[2]
    damage(run, bad)
    fast = AnalysisConfig(icl_examples=8, ablation_examples=4, pca_pairs=16, pattern_examples=4,
                          prefix_sequences=4, ablate=False, precision="fp32")
    result = analyze_run(run, fast, progress=False)
    assert list(result["skipped"]) == [bad.step] and expected in result["skipped"][bad.step]
    assert "\n" not in result["skipped"][bad.step]
    assert len(result["analyzed"]) == len(checkpoints.list_checkpoints(run)) - 1
