"""Portable and untrusted runs (interp.rundata): a run carries its tokenizer and probes, so a
copy is analysed, reported and viewed without its corpus or token cache; and nothing its
config.json names outside the run folder is read or written by analysis or the app.

One tiny run on a text corpus (trained once, about two seconds); its corpus is deleted once it
is trained, so every test here works without it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interp import checkpoints, cli, rundata
from interp.analysis import analysis_series
from interp.errors import CheckpointError
from interp.train import train
from tests.conftest import tiny_config
from tests.test_data import write_corpus

APP = str(Path(__file__).resolve().parent.parent / "apps" / "workbench.py")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(run, the cache it was made with): trained on a corpus that no longer exists."""
    base = tmp_path_factory.mktemp("portable")
    corpus = write_corpus(base / "corpus")
    config = tiny_config(data={"source": "files", "path": str(corpus), "vocab_size": 300,
                               "heldout_fraction": 0.2},
                         train={"steps": 20, "log_checkpoints": 2, "linear_checkpoints": 2})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_CACHE", str(base / "cache"))
        train(config, base / "home" / "run", progress=False)
    shutil.rmtree(corpus)
    return base / "home" / "run", base / "cache"


def _copy(run: Path, where: Path) -> Path:
    shutil.copytree(run, where / run.name)
    return where / run.name


def _empty_cache(monkeypatch, tmp_path) -> Path:
    """Move the per-user cache away: an empty folder, as on a machine that never saw the corpus."""
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("INTERP_CACHE", str(empty))
    return empty


def _app_views(monkeypatch, root: Path) -> tuple[list[str], list[str]]:
    """Warnings of the Head detail and Tokens views of the app on ``root``, and the texts shown
    in its text areas (the held-out sample)."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_APP_ROOT", str(root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    warnings, texts = [], []
    for view in ("Head detail", "Tokens"):
        at.sidebar.radio(key="view").set_value(view).run()
        assert not at.exception, at.exception
        warnings += [w.value for w in at.warning]
        texts += [t.value for t in at.text_area]
    return warnings, texts


# --------------------------------------------------------------------------- portable

def test_a_run_carries_its_tokenizer_probes_and_fingerprint(made):
    run, _ = made
    meta = json.loads((run / "data" / "data.json").read_text())
    assert meta["kind"] == "text" and meta["fingerprint"]["cache_key"]
    assert set(meta["files"]) == {"tokenizer.json", "token_counts.npy", "heldout-256-0.npy"}
    heldout = np.load(run / "data" / "heldout-256-0.npy", allow_pickle=False)
    assert heldout.shape == (256, 32) and heldout.dtype == np.uint16
    assert not list(run.glob(".data.tmp*"))


def test_a_copied_run_is_analysed_reported_and_viewed_without_its_corpus_or_cache(made, tmp_path, monkeypatch, capsys):
    """The app on such a run is in the untrusted-run test below (also without corpus or cache)."""
    empty = _empty_cache(monkeypatch, tmp_path)
    run = _copy(made[0], tmp_path)
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation"]) == 0, capsys.readouterr().err
    assert len(analysis_series(run)["step"]) == len(checkpoints.list_checkpoints(run))
    assert cli.main(["report", str(run), "--out", str(tmp_path / "figures")]) == 0, capsys.readouterr().err
    assert not any(empty.iterdir())  # nothing was cached either


def test_a_run_made_before_runs_carried_data__gets_it_from_this_users_cache_or_says_how(
        made, tmp_path, monkeypatch, capsys):
    """Only this user's cache, found by the key in run.json, gives an old run its data/; the
    files are then those training writes, so its probes and analysis are the same."""
    run, cache = made
    old = _copy(run, tmp_path)
    shutil.rmtree(old / "data")
    _empty_cache(monkeypatch, tmp_path)
    assert cli.main(["analyze", str(old), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "carries no tokenizer or probes" in err and "INTERP_CACHE" in err
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    data = rundata.analysis_data(old, checkpoints.read_config(old), rundata.HELDOUT_EXAMPLES, 0)
    assert isinstance(data, rundata.RunData)
    for name in ("data.json", "heldout-256-0.npy", "token_counts.npy", "tokenizer.json"):
        assert (old / "data" / name).read_bytes() == (run / "data" / name).read_bytes(), name


def test_resuming_an_old_run_where_its_corpus_is__writes_its_data_folder(tmp_path, monkeypatch):
    """What the errors above advise when no cache has the run: training reads the corpus."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    config = tiny_config(data={"source": "files", "path": str(write_corpus(tmp_path / "corpus")),
                               "vocab_size": 300, "heldout_fraction": 0.2},
                         train={"steps": 4, "log_checkpoints": 1, "linear_checkpoints": 1})
    train(config, tmp_path / "run", progress=False)
    made = (tmp_path / "run" / "data" / "heldout-256-0.npy").read_bytes()
    shutil.rmtree(tmp_path / "run" / "data")
    train(None, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "data" / "heldout-256-0.npy").read_bytes() == made


def test_another_held_out_set__comes_from_this_users_cache_or_is_refused_in_one_line(
        made, tmp_path, monkeypatch, capsys):
    run = _copy(made[0], tmp_path)
    _empty_cache(monkeypatch, tmp_path)
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation", "--icl-examples", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--icl-examples 256" in err
    monkeypatch.setenv("INTERP_CACHE", str(made[1]))
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation", "--icl-examples", "16"]) == 0
    assert rundata.open_run_data(run).heldout_sets() == [(16, 0), (256, 0)]


def _link_out(data: Path) -> None:
    """tokenizer.json as a link to an identical file outside the run (its hash still matches)."""
    outside = data.parent.parent / "outside.json"
    shutil.move(data / "tokenizer.json", outside)
    (data / "tokenizer.json").symlink_to(outside)


@pytest.mark.parametrize("damage, needle", [
    (_link_out, "links outside the run folder"),
    (lambda d: (d / "tokenizer.json").write_text("{}"), "differs from its record"),
    (lambda d: (d / "data.json").write_text(json.dumps({**json.loads((d / "data.json").read_text()),
                                                        "vocab_size": 2**40})), "not a data record"),
    (lambda d: (d / "data.json").write_bytes(b"\0" * (rundata.MAX_JSON_BYTES + 1)), "more than"),
])
def test_a_damaged_data_folder__is_one_line_and_exit_2(made, tmp_path, monkeypatch, capsys, damage, needle):
    run = _copy(made[0], tmp_path)
    _empty_cache(monkeypatch, tmp_path)
    damage(run / "data")
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err, err


# --------------------------------------------------------------------------- untrusted

_WATCHED: list[str] = []
_SEEN: list[tuple[str, str]] = []
_EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace", "os.remove",
           "shutil.rmtree", "shutil.copyfile", "glob.glob", "os.walk"}


def _audit(event: str, args: tuple) -> None:
    """Record every file operation on a watched path (Python's audit hooks see them all)."""
    if not _WATCHED or event not in _EVENTS or not args:
        return
    try:
        path = os.fsdecode(args[0])
    except TypeError:  # a file descriptor
        return
    path = os.path.abspath(path)
    if any(path == w or path.startswith(w + os.sep) for w in _WATCHED):
        _SEEN.append((event, path))


@pytest.fixture
def watch():
    """watch(*paths): record file operations on them for the rest of the test; returns the list."""
    if not getattr(sys, "_interp_test_audit", False):
        sys.addaudithook(_audit)  # hooks cannot be removed: one per process, idle when nothing is watched
        sys._interp_test_audit = True
    _SEEN.clear()

    def start(*paths: Path) -> list:
        _WATCHED.extend(os.path.abspath(p) for p in paths)
        return _SEEN
    yield start
    _WATCHED.clear()


def test_an_untrusted_run__analysis_and_app_follow_no_path_in_its_config(
        made, tmp_path, monkeypatch, capsys, watch):
    run = _copy(made[0], tmp_path / "runs")
    decoy = tmp_path / "passwd"  # stands for /etc/passwd
    decoy.write_text("root:x:0:0:SENTINEL-SECRET:/root:/bin/bash\n" * 200)
    elsewhere = tmp_path / "foreign-cache"  # stands for a folder the run's author chose
    elsewhere.mkdir()
    config = json.loads((run / "config.json").read_text())
    config["data"].update(path=str(decoy), cache_dir=str(elsewhere))
    (run / "config.json").write_text(json.dumps(config))
    _empty_cache(monkeypatch, tmp_path)
    seen = watch(decoy, elsewhere)
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation"]) == 0, capsys.readouterr().err
    warnings, texts = _app_views(monkeypatch, tmp_path / "runs")
    assert not warnings
    assert texts and not any("SENTINEL" in t for t in texts)
    assert seen == []  # never opened, listed or written
    assert not any(elsewhere.iterdir())


def test_a_config_claiming_a_huge_model__is_refused_before_it_is_allocated(made, tmp_path, monkeypatch):
    """config.json within the limits (1.3e9 parameters) but the checkpoint holds a tiny model:
    load_model refuses from the safetensors header, and no model is built off the meta device."""
    run = _copy(made[0], tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["model"].update(n_layers=20, d_model=4096, n_heads=8, d_head=512)
    (run / "config.json").write_text(json.dumps(config))
    real = checkpoints.Transformer

    def guarded(cfg, **kwargs):
        assert torch.empty(0).device.type == "meta", "a model of the run's config.json was allocated"
        return real(cfg, **kwargs)
    monkeypatch.setattr(checkpoints, "Transformer", guarded)
    with pytest.raises(CheckpointError, match="does not fit its run's config.json"):
        checkpoints.load_model(checkpoints.list_checkpoints(run)[-1].path)
