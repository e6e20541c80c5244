"""Training: schedule, metrics, and exact resume (after an exception and after SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from interp import checkpoints, store, train as training
from interp.config import TrainConfig
from tests.conftest import tiny_config


def final_weights(run_dir: Path) -> dict:
    return load_file(checkpoints.list_checkpoints(run_dir)[-1].path / "model.safetensors")


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), f"{name} differs"


def test_learning_rate__warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    rates = [training.learning_rate(s, cfg) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_metrics__train_and_eval_series_cover_the_run(tmp_path):
    run_dir = training.train(tiny_config(), tmp_path / "run", progress=False)
    train_series = store.series(run_dir, "train")
    evals = store.series(run_dir, "eval")
    assert train_series["step"][-1] == 40 and np.all(np.diff(train_series["step"]) > 0)
    assert list(evals["step"]) == checkpoints.checkpoint_schedule(tiny_config().train)
    assert evals["prefix_matching"].shape == (len(evals["step"]), 2, 2)
    assert evals["loss_by_position"].shape[1] == 32
    assert train_series["loss"][-1] < train_series["loss"][0]


def test_resume_after_a_crash__ends_with_identical_weights_and_metrics(tmp_path, monkeypatch):
    config = tiny_config()
    straight = training.train(config, tmp_path / "straight", progress=False)

    real_step, calls = training._train_step, {"n": 0}

    def crashing_step(run, lr):
        calls["n"] += 1
        if calls["n"] == 23:
            raise RuntimeError("simulated crash")
        return real_step(run, lr)

    monkeypatch.setattr(training, "_train_step", crashing_step)
    with pytest.raises(RuntimeError):
        training.train(config, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(training, "_train_step", real_step)
    assert checkpoints.run_status(tmp_path / "crashed") == "failed"
    resumed = training.train(None, tmp_path / "crashed", resume=True, progress=False)

    assert_same_weights(final_weights(straight), final_weights(resumed))
    a, b = store.series(straight, "train"), store.series(resumed, "train")
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["loss"], b["loss"])
    np.testing.assert_array_equal(store.series(straight, "eval")["prefix_matching"],
                                  store.series(resumed, "eval")["prefix_matching"])


def test_starting_over_an_existing_run__is_refused(tmp_path):
    from interp.errors import CheckpointError

    config = tiny_config(train={"steps": 4})
    training.train(config, tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        training.train(config, tmp_path / "run", progress=False)


def test_on_checkpoint__called_once_per_checkpoint_after_it_is_complete(tmp_path):
    # Catches: the callback called before the checkpoint or its metrics are written, called
    # twice or skipped, or (on resume) called again for the checkpoint the run resumed from.
    calls = []

    def on_checkpoint(run_dir, step):
        assert checkpoints.last_good_checkpoint(run_dir).step == step
        assert store.series(run_dir, "eval")["step"][-1] == step
        calls.append(step)

    config = tiny_config(train={"steps": 12})
    schedule = checkpoints.checkpoint_schedule(config.train)
    run_dir = training.train(config, tmp_path / "run", progress=False, on_checkpoint=on_checkpoint)
    assert calls == schedule == [c.step for c in checkpoints.list_checkpoints(run_dir)]
    # A resume from a middle checkpoint calls it for the checkpoints it writes, and only those.
    import shutil

    for later in checkpoints.list_checkpoints(run_dir)[3:]:
        shutil.rmtree(later.path)
    calls.clear()
    training.train(None, run_dir, resume=True, progress=False, on_checkpoint=on_checkpoint)
    assert calls == schedule[3:]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "interp.cli", *args]


TINY_OVERRIDES = ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_head=16",
                  "model.n_ctx=32", "markov_states=8", "batch_size=8", "eval_examples=16",
                  "precision=fp32", "log_checkpoints=10", "linear_checkpoints=30", "threads=1"]


@pytest.mark.slow
def test_sigkill_mid_training__resume_gives_identical_weights(tmp_path):
    overrides = [*TINY_OVERRIDES, "steps=600"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run(_cli("train", "markov", *overrides, "--out", str(tmp_path), "--name", "straight",
                        "--no-progress"), check=True, env=env, capture_output=True)

    victim = subprocess.Popen(_cli("train", "markov", *overrides, "--out", str(tmp_path),
                                   "--name", "killed", "--no-progress"),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_dir = tmp_path / "killed"
    deadline = time.time() + 120
    while time.time() < deadline and len(checkpoints.list_checkpoints(killed_dir)) < 25:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    steps_at_kill = [c.step for c in checkpoints.list_checkpoints(killed_dir)]
    assert 600 not in steps_at_kill, "the run finished before it was killed; the test proves nothing"
    assert checkpoints.run_status(killed_dir) == "interrupted"

    resumed = subprocess.run(_cli("train", "--resume", str(killed_dir), "--no-progress"),
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(killed_dir))
    assert checkpoints.run_status(killed_dir) == "finished"


@pytest.mark.parametrize("args, expected", [
    (["train", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
    (["train", "markov", "layers=3"], "'layers' is not a config key"),
    (["train", "--resume", "/nonexistent/run"], "does not exist"),
    (["train", "default", "data.source=files", "data.path=/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
])
def test_cli_bad_input__one_line_error_and_exit_2(tmp_path, args, expected):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run(_cli(*args, "--out", str(tmp_path)) if args[1] != "--resume" else _cli(*args),
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interp: error:") and expected in lines[0], result.stderr


def crash_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th training step of this process raise."""
    real_step, calls = training._train_step, {"n": 0}

    def crashing_step(run, lr):
        calls["n"] += 1
        if calls["n"] == call:
            raise RuntimeError("simulated crash")
        return real_step(run, lr)

    monkeypatch.setattr(training, "_train_step", crashing_step)


def test_resume_between_records__first_record_averages_the_whole_interval(tmp_path, monkeypatch):
    # Catches: after a resume from a checkpoint that is not on a record step (here 14, records
    # every 10), the record at step 20 averaged the 6 steps run since the resume, not 10.
    config = tiny_config(train={"steps": 40, "log_every": 10, "log_until": 0.35, "log_checkpoints": 4,
                                "linear_checkpoints": 2})
    assert 14 in checkpoints.checkpoint_schedule(config.train) and 15 not in checkpoints.checkpoint_schedule(config.train)
    straight = training.train(config, tmp_path / "straight", progress=False)
    crash_at(monkeypatch, 17)  # step 16: after the checkpoint at 14
    with pytest.raises(RuntimeError):
        training.train(config, tmp_path / "crashed", progress=False)
    monkeypatch.undo()
    resumed = training.train(None, tmp_path / "crashed", resume=True, progress=False)
    a, b = store.series(straight, "train"), store.series(resumed, "train")
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["loss"], b["loss"])


def test_non_finite_loss__stops_the_run_as_diverged_in_one_line(tmp_path, monkeypatch, capsys):
    # Catches: lr=inf trained to NaN and exited 0.
    from interp import cli

    real_step = training._train_step

    def nan_from_step_7(run, lr):
        loss, norm = real_step(run, lr)
        return (float("nan"), norm) if run.step >= 7 else (loss, norm)

    monkeypatch.setattr(training, "_train_step", nan_from_step_7)
    code = cli.main(["train", "markov", *TINY_OVERRIDES, "steps=20", "--out", str(tmp_path), "--name", "nan",
                     "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "diverged at step 7" in lines[0] and "train.lr" in lines[0], lines
    assert checkpoints.run_status(tmp_path / "nan") == "diverged"
    assert max(c.step for c in checkpoints.list_checkpoints(tmp_path / "nan")) <= 7
    assert np.isfinite(store.series(tmp_path / "nan", "eval")["val_loss"]).all()


def disk_full_on_call(monkeypatch, module, name: str, call: int) -> None:
    """Make the ``call``-th call of ``module.name`` fail as a full disk does."""
    import errno

    real, calls = getattr(module, name), {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= call:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def test_disk_full_mid_run__one_line_status_failed_no_temporaries_then_resume(tmp_path, monkeypatch, capsys):
    # Catches: two chained tracebacks, status left "training" and temporary files left behind.
    from interp import cli

    disk_full_on_call(monkeypatch, checkpoints, "save_file", 4)  # the second checkpoint's trainer file
    args = ["train", "markov", *TINY_OVERRIDES, "steps=20", "log_checkpoints=3", "linear_checkpoints=2",
            "--out", str(tmp_path), "--name", "full", "--no-progress"]
    assert cli.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    run_dir = tmp_path / "full"
    assert checkpoints.run_status(run_dir) == "failed"
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name or p.name.endswith(".lock") and p.name != ".metrics.lock"]
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert checkpoints.run_status(run_dir) == "finished"


def test_start_that_fails_before_its_first_checkpoint__leaves_no_folder(tmp_path, monkeypatch, capsys):
    from interp import cli

    disk_full_on_call(monkeypatch, checkpoints, "save_file", 1)
    out = tmp_path / "fresh" / "deeper"
    assert cli.main(["train", "markov", *TINY_OVERRIDES, "steps=20", "log_checkpoints=3", "--out", str(out),
                     "--name", "x", "--no-progress"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # neither the run nor the --out folders it made


def test_cli__overrides_may_follow_train_options(capsys):
    """Issue 12: 'interp train markov --out X steps=5' said 'unrecognized arguments: steps=5'
    (argparse takes positionals only before the first option). Negative control: a stray
    option is still refused with argparse's one line and exit 2."""
    from interp.cli import _parse, main

    args = _parse(["train", "markov", "lr=1e-3", "--out", "X", "--no-progress", "steps=5", "seed=3"])
    assert args.preset == "markov" and args.overrides == ["lr=1e-3", "steps=5", "seed=3"]
    assert str(args.out) == "X"
    assert main(["train", "markov", "--out", "X", "steps=5", "--bogus"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert main(["runs", "a", "b=c"]) == 2  # extras are overrides for train only
