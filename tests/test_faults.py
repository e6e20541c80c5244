"""Fault injection (issue 12): kill -9 training, analysis and the writes inside them, then check
that nothing is lost or duplicated and the result equals a run that was never killed.

Three kinds of kill, ``KILLS`` of them in all (22 by default; ``INTERP_FAULT_KILLS=100`` or
``benchmarks/fault_injection.py`` for more):

- training killed at random moments, resumed each time, one run killed again and again;
- a kill inside a checkpoint write (after the weights file, before the trainer state, the
  manifest and the rename) and inside a metrics update (after some of its records, before it
  is stored), injected through a ``sitecustomize`` module that only these subprocesses load
  (a kill inside the metrics journal's own write is in tests/test_store.py);
- ``interp analyze`` killed at random moments, then run to the end.

Every check is against a straight run of the same config: the same checkpoints, bit-identical
final weights, train/eval/analysis rows once per step, and the same analysis. Two analyses at
once and the resume of a live run are in tests/test_writers.py
(runlock); they refuse or wait, and add no rows.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from interp import checkpoints, store
from interp.analysis import analysis_series

KILLS = int(os.environ.get("INTERP_FAULT_KILLS", "22"))
OVERRIDES = ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_head=16",
             "model.n_ctx=32", "markov_states=8", "batch_size=8", "eval_examples=16",
             "precision=fp32", "log_checkpoints=10", "linear_checkpoints=30", "threads=1", "steps=400"]
ANALYZE = ["--no-ablation", "--icl-examples", "16", "--no-progress"]
REPO = Path(__file__).parents[1]

# Loaded by Python at start-up from PYTHONPATH: wraps ``module:attribute`` so that its n-th
# call (INTERP_FAULT) does its work and then the process SIGKILLs itself.
SITECUSTOMIZE = '''
import os
spec = os.environ.get("INTERP_FAULT")
if spec:
    import importlib, signal
    module_name, attribute, nth = spec.split(":")
    module = importlib.import_module(module_name)
    real, calls = getattr(module, attribute), [0]
    def faulty(*args, **kwargs):
        result = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(module, attribute, faulty)
'''


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "interp.cli", *args]


def _env(tmp: Path, fault: str | None = None) -> dict[str, str]:
    hooks = tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO)])}
    env.pop("INTERP_FAULT", None)
    if fault:
        env["INTERP_FAULT"] = fault
    return env


def _train(out: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(_cli("train", "markov", *OVERRIDES, "--out", str(out), "--name", name,
                                 "--no-progress"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _resume(run: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(_cli("train", "--resume", str(run), "--no-progress"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(process: subprocess.Popen, ready, delay: float) -> bool:
    """SIGKILL ``process`` ``delay`` s after ``ready()`` holds; False if it ended first."""
    while process.poll() is None and not ready():
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def _analysed(run: Path) -> int:
    """Checkpoints with an analysis row (read as any reader would, while the writer runs)."""
    return len(store.series(run, "analysis").get("step", []))


def _steps(run: Path) -> list[int]:
    return [c.step for c in checkpoints.list_checkpoints(run)]


def _weights(run: Path) -> dict:
    return load_file(checkpoints.list_checkpoints(run)[-1].path / "model.safetensors")


def _assert_like(run: Path, straight: Path) -> None:
    """Same checkpoints, bit-identical final weights, each train/eval row once."""
    assert checkpoints.run_status(run) == "finished"
    assert _steps(run) == _steps(straight)
    a, b = _weights(run), _weights(straight)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for group in ("train", "eval"):
        ours, theirs = store.series(run, group), store.series(straight, group)
        assert len(np.unique(ours["step"])) == len(ours["step"]), f"duplicate {group} rows"
        np.testing.assert_array_equal(np.sort(ours["step"]), np.sort(theirs["step"]))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The run never killed, trained and analysed."""
    out = tmp_path_factory.mktemp("straight")
    env = _env(out)
    assert _train(out, "run", env).wait() == 0
    subprocess.run(_cli("analyze", str(out / "run"), *ANALYZE), env=env, check=True, capture_output=True)
    return out / "run"


@pytest.mark.slow
def test_training_killed_at_random_moments__resumes_to_the_straight_run(straight, tmp_path):
    rng, env, run = random.Random(0), _env(tmp_path), tmp_path / "run"
    kills, n_kills = 0, max(KILLS - 8, 4)
    process = _train(tmp_path, "run", env)
    while kills < n_kills:
        target = len(_steps(run)) + rng.randint(1, 2)
        if _kill_after(process, lambda: len(_steps(run)) >= target, rng.uniform(0, 0.05)):
            kills += 1
            assert checkpoints.run_status(run) == "interrupted"
        elif process.returncode == 0:
            break  # the run finished between two kills
        process = _resume(run, env)
    assert process.wait() == 0, process.stderr.read()
    assert kills == n_kills, f"only {kills} of {n_kills} kills landed before the run finished"
    _assert_like(run, straight)


@pytest.mark.slow
@pytest.mark.parametrize("fault", [
    "interp.checkpoints:save_file:7",  # the weights of the 4th checkpoint written, nothing else
    "interp.checkpoints:save_file:30",
    "interp.store:append:5",  # a metrics update with its train rows but not its eval row
    "interp.store:append:40",
])
def test_kill_inside_a_write__resume_repairs_it(straight, tmp_path, fault):
    run = tmp_path / "run"
    victim = _train(tmp_path, "run", _env(tmp_path, fault))
    assert victim.wait() == -signal.SIGKILL, "the fault did not fire"
    assert checkpoints.run_status(run) == "interrupted"
    resumed = _resume(run, _env(tmp_path))
    assert resumed.wait() == 0, resumed.stderr.read()
    assert not list(run.glob("*.tmp*")) and not list(run.glob(".step_*"))  # no temporaries left
    _assert_like(run, straight)


@pytest.mark.slow
def test_analysis_killed_at_random_moments__ends_with_the_straight_analysis(straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    with store.update(run) as handle:  # as if never analysed
        for group in ("analysis", "phase", "probes"):
            if group in handle:
                del handle[group]
    rng, env, kills = random.Random(1), _env(tmp_path), 0
    for _ in range(6):  # each after 1-4 more checkpoints are analysed: 24 at most of 39
        target = _analysed(run) + rng.randint(1, 4)
        process = subprocess.Popen(_cli("analyze", str(run), *ANALYZE), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        kills += _kill_after(process, lambda: _analysed(run) >= target, rng.uniform(0, 0.2))
    done = subprocess.run(_cli("analyze", str(run), *ANALYZE), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert kills >= 5, f"only {kills} of 6 kills landed before the analysis ended"
    ours, theirs = analysis_series(run), analysis_series(straight)
    assert len(np.unique(ours["step"])) == len(ours["step"]), "duplicate analysis rows"
    assert ours.keys() == theirs.keys()
    for key in ours:
        if key != "attrs":
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, atol=1e-9, err_msg=key)
