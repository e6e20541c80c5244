"""A damaged or missing metrics.h5: analyze, --redo and --resume move it aside, rebuild the train
and eval series from the checkpoints bit for bit, leave no temporary copy, and never advise
deleting data; report says what is wrong in one line (issue 12, item 3 of its list)."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest

from interp import checkpoints, cli, store
from interp.train import train
from tests.conftest import tiny_config

ANALYZE = ["--no-progress", "--no-ablation", "--icl-examples", "16"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return train(tiny_config(), tmp_path_factory.mktemp("runs") / "straight", progress=False)


@pytest.fixture
def run(straight, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(straight, copy)
    return copy


def damage(run_dir) -> bytes:
    """Overwrite the HDF5 superblock, as a torn write or a bad disk block would."""
    path = run_dir / store.FILENAME
    data = bytearray(path.read_bytes())
    data[:512] = b"\0" * 512
    path.write_bytes(bytes(data))
    return bytes(data)


def series(run_dir, group):
    with h5py.File(run_dir / store.FILENAME, "r") as handle:
        return {name: ds[()] for name, ds in handle[group].items()}, dict(handle[group].attrs)


CLOCKS = {"tokens_per_second", "wall_seconds"}  # measured, so they differ between two runs


def assert_same_series(a, b, group, clocks=True):
    (rows_a, attrs_a), (rows_b, attrs_b) = series(a, group), series(b, group)
    assert rows_a.keys() == rows_b.keys()
    for name in rows_a:
        if name in CLOCKS and not clocks:
            continue
        assert rows_a[name].dtype == rows_b[name].dtype, name
        np.testing.assert_array_equal(rows_a[name], rows_b[name], err_msg=f"{group}/{name}")
    assert attrs_a == attrs_b


def assert_kept_aside(run_dir, damaged: bytes):
    aside = list(run_dir.glob("metrics.h5.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # kept, not modified
    assert not list(run_dir.glob(".*.tmp*")), "a temporary copy was left"


@pytest.mark.parametrize("extra", [[], ["--redo"]])
def test_analyze_of_a_damaged_metrics_file__rebuilds_train_and_eval_and_keeps_the_old_one(
        straight, run, extra, capsys, caplog):
    # Catches: an OSError traceback, a 1 MB temporary copy left per try, and advice to delete
    # the file (which loses the train and eval series for good).
    damaged = damage(run)
    with caplog.at_level(logging.WARNING, logger="interp"):
        assert cli.main(["analyze", str(run), *ANALYZE, *extra]) == 0
    assert "Traceback" not in capsys.readouterr().err
    notes = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(notes) == 1 and "moved it to metrics.h5.damaged-" in notes[0] and "delete" not in notes[0]
    assert "train 8 of 8 rows" in notes[0] and "eval 10 of 10 rows" in notes[0]
    assert_kept_aside(run, damaged)
    assert_same_series(straight, run, "train")
    assert_same_series(straight, run, "eval")
    assert len(store.series(run, "analysis")["step"]) == len(checkpoints.list_checkpoints(run))


def test_resume_with_a_damaged_metrics_file__ends_with_the_straight_run_series(straight, run, caplog):
    for later in checkpoints.list_checkpoints(run):
        if later.step > 20:
            shutil.rmtree(later.path)
    damaged = damage(run)
    with caplog.at_level(logging.WARNING, logger="interp"):
        assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert any("moved it to metrics.h5.damaged-" in r.getMessage() for r in caplog.records)
    assert_kept_aside(run, damaged)
    assert_same_series(straight, run, "train", clocks=False)
    assert_same_series(straight, run, "eval")


def test_deleted_metrics_file__is_rebuilt_from_the_checkpoints(straight, run):
    (run / store.FILENAME).unlink()
    assert cli.main(["analyze", str(run), *ANALYZE]) == 0
    assert_same_series(straight, run, "train")
    assert_same_series(straight, run, "eval")


def test_report_of_a_damaged_metrics_file__one_line_that_keeps_the_data(run, capsys):
    damage(run)
    assert cli.main(["report", str(run)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and f"interp analyze {run}" in lines[0], lines
    assert "delete" not in lines[0]


def test_report_of_a_run_missing_its_train_series__works_from_what_is_there(run, capsys, tmp_path):
    # Catches: KeyError 'tokens' when the train series is absent.
    assert cli.main(["analyze", str(run), *ANALYZE]) == 0
    with store.update(run) as handle:
        del handle["train"]
    assert cli.main(["report", str(run), "--out", str(tmp_path / "figures")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_report_of_an_analysis_missing_a_series__one_line_saying_how_to_redo_it(run, capsys, tmp_path):
    assert cli.main(["analyze", str(run), *ANALYZE]) == 0
    with store.update(run) as handle:
        del handle["analysis/copying_ov"]
    assert cli.main(["report", str(run), "--out", str(tmp_path / "figures")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "copying_ov" in lines[0] and "--redo" in lines[0], lines
