"""One writer per run: a second analysis or a resume of a live trainer is refused in one line,
and the metrics file never holds two rows for one step (issue 12, items 1 and 2)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from interp import checkpoints, cli, runlock, store
from interp.train import train
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.d_model=32", "model.n_heads=2", "model.d_head=16", "model.n_ctx=32", "markov_states=8",
        "batch_size=8", "eval_examples=16", "precision=fp32", "log_checkpoints=4", "linear_checkpoints=3",
        "threads=1"]


@pytest.fixture
def small_run(tmp_path):
    return train(tiny_config(train={"steps": 12}), tmp_path / "run", progress=False)


def hold_in_child(run_dir: Path, role: str) -> subprocess.Popen:
    """A child process that holds ``role``'s lock of ``run_dir`` until it is killed."""
    code = (f"import sys, time\nfrom interp import runlock\nwith runlock.hold({str(run_dir)!r}, {role!r}):\n"
            f"    print('held', flush=True)\n    time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "held"
    return child


def stop(child: subprocess.Popen) -> None:
    child.kill()
    child.wait()


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interp: error:"), lines
    return lines[0]


def test_second_analyze__is_refused_in_one_line_naming_the_first(small_run, capsys):
    # Catches: two analyses of one run at once (issue: 79 rows for 40 checkpoints).
    child = hold_in_child(small_run, "analyze")
    try:
        assert cli.main(["analyze", str(small_run), "--no-progress", "--no-ablation"]) == 2
        line = one_error_line(capsys)
        assert f"pid {child.pid}" in line and socket.gethostname() in line and "being analysed" in line
        assert "analysis" not in h5py.File(small_run / store.FILENAME, "r")
    finally:
        stop(child)
    # A killed holder releases its lock by itself: the next analysis goes ahead.
    assert cli.main(["analyze", str(small_run), "--no-progress", "--no-ablation"]) == 0


def test_redo__is_refused_while_an_analysis_runs(small_run, capsys):
    child = hold_in_child(small_run, "analyze")
    try:
        assert cli.main(["analyze", str(small_run), "--redo", "--no-progress"]) == 2
        assert f"pid {child.pid}" in one_error_line(capsys)
    finally:
        stop(child)


def test_resume_of_a_stopped_live_trainer__refused_naming_pid_and_host(tmp_path, capsys):
    # Catches: --resume of a run whose trainer is alive but SIGSTOPped (issue: 25 duplicate
    # eval rows, 250 train rows, run.json's pid overwritten).
    run_dir = tmp_path / "live"
    victim = subprocess.Popen([sys.executable, "-m", "interp.cli", "train", "markov", *TINY, "steps=50",
                               "--out", str(tmp_path), "--name", "live", "--no-progress"],
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoints.list_checkpoints(run_dir):
        time.sleep(0.002)
    victim.send_signal(signal.SIGSTOP)
    try:
        assert checkpoints.run_status(run_dir) == "training", "the run ended before it was stopped"
        pid_before = checkpoints.read_run_info(run_dir)["pid"]
        assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
        line = one_error_line(capsys)
        assert f"pid {victim.pid}" in line and socket.gethostname() in line
        assert checkpoints.read_run_info(run_dir)["pid"] == pid_before == victim.pid
    finally:
        victim.kill()
        victim.wait()
    # Killed: the kernel released its lock, so the status says so and a resume goes ahead.
    assert checkpoints.run_status(run_dir) == "interrupted"
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    for group in ("train", "eval"):
        steps = store.series(run_dir, group)["step"]
        assert len(steps) == len(set(steps.tolist())) and np.all(np.diff(steps) > 0)


def test_second_trainer_of_a_new_run_name__refused_and_leaves_the_first_alone(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    child = hold_in_child(run_dir, "train")
    try:
        with pytest.raises(runlock.RunBusy, match=f"pid {child.pid}"):
            train(tiny_config(train={"steps": 4}), run_dir, progress=False)
        assert sorted(p.name for p in run_dir.iterdir()) == [".train.lock"]
    finally:
        stop(child)


def test_metrics_append__drops_rows_whose_step_is_already_stored(tmp_path):
    with store.update(tmp_path) as handle:
        store.append(handle, "analysis", {"step": [10, 20], "x": [1.0, 2.0]})
        store.append(handle, "analysis", {"step": [20, 30, 30], "x": [9.0, 3.0, 9.0]})
        store.append(handle, "analysis", {"step": [10], "x": [9.0]})
    rows = store.series(tmp_path, "analysis")
    assert rows["step"].tolist() == [10, 20, 30] and rows["x"].tolist() == [1.0, 2.0, 3.0]


def test_failed_metrics_update__leaves_no_temporary_copy(tmp_path):
    with store.update(tmp_path) as handle:
        store.append(handle, "train", {"step": [1]})
    with pytest.raises(RuntimeError):
        with store.update(tmp_path) as handle:
            store.append(handle, "train", {"step": [2]})
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.lock", "metrics.h5"]
    assert store.series(tmp_path, "train")["step"].tolist() == [1]


def test_holder__none_for_a_free_lock_and_the_pid_for_a_held_one(tmp_path):
    assert runlock.holder(tmp_path, "train") is None  # no lock file at all
    with runlock.hold(tmp_path, "train"):
        with runlock.hold(tmp_path, "train"):  # re-entrant within a process
            assert runlock.holder(tmp_path, "train") == (str(os.getpid()), socket.gethostname())
    assert runlock.holder(tmp_path, "train") is None
