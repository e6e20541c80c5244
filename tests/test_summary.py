"""The run summary (interp/summary.py) on hand-written metrics files: every number it prints
must follow from the records it reads (issue 9, item 6)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from interp import store
from interp.phase import analyse_phase
from interp.runs import update_run_info
from interp.summary import summarize
from tests.conftest import tiny_config

def write_run(run_dir, n_layers=2, train=None, prefix_last=0.45, steps=5, phase=None):
    """A run directory with config.json, run.json and a metrics file (no checkpoints).

    ``train``: the train records; default 5 records of 1,000 tokens each whose speeds differ
    (so their median is not the run's rate). ``prefix_last``: the final prefix-matching score
    of head (last layer).0, rising from 0.02 over 4 evaluations. ``phase``: attributes of the
    ``phase`` group (none when None: the run is not analysed)."""
    config = tiny_config(model={"n_layers": n_layers})
    config = replace(config, model=replace(config.model, d_vocab=9))
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(config.to_json())
    update_run_info(run_dir, status="finished", device="cpu", precision="fp32")
    if train is None:
        train = {"step": [10, 20, 30, 40, 50], "tokens": [1000, 2000, 3000, 4000, 5000],
                 "loss": [3.0, 2.5, 2.0, 1.8, 1.7], "lr": [1e-3] * 5, "grad_norm": [1.0] * 5,
                 "tokens_per_second": [50.0, 100.0, 100.0, 200.0, 400.0],
                 "wall_seconds": [25.0, 40.0, 55.0, 65.0, 72.5]}  # training + 5 s of checkpoint each
    prefix = np.zeros((4, n_layers, 2), dtype=np.float32)
    prefix[:, -1, 0] = np.linspace(0.02, prefix_last, 4)
    evals = {"step": [0, 10, 30, 50], "tokens": [0, 1000, 3000, 5000], "val_loss": [3.0, 2.5, 2.0, 1.7],
             "icl_score": [0.0, -0.1, -0.2, -0.3], "icl_score_stderr": [0.01] * 4, "prefix_matching": prefix}
    with store.update(run_dir) as handle:
        store.append(handle, "train", train)
        store.append(handle, "eval", evals)
        handle["eval"].attrs.update(icl_late_index=30, icl_early_index=3, n_examples=16)
        if phase is not None:
            handle.create_group("phase").attrs.update(phase)
    return run_dir


def trained_line(text: str) -> tuple[int, float, float, float | None]:
    """(tokens, minutes of training, tokens/s, wall minutes or None) from the 'trained' line."""
    line = next(l for l in text.splitlines() if l.startswith("trained"))
    tokens = int(re.search(r"trained\s+([\d,]+) tokens", line).group(1).replace(",", ""))
    minutes = float(re.search(r"([\d.]+) min of training", line).group(1))
    rate = float(re.search(r"\(([\d,.]+) tokens/s", line).group(1).replace(",", ""))
    wall = re.search(r"([\d.]+) min wall clock", line)
    return tokens, minutes, rate, None if wall is None else float(wall.group(1))


def test_summary__the_rate_is_the_runs_tokens_over_its_training_time(tmp_path):
    # Catches the "8.1 min of training (52,425 tokens/s)" for 8.2M tokens bug: the median of the
    # per-record speeds (100 here) beside a wall clock that includes evaluation and checkpoints
    # (72.5 s): 100 tokens/s x 1.2 min is not 5,000 tokens. Training time is the sum of each
    # record's tokens over its speed: 20 + 10 + 10 + 5 + 2.5 = 47.5 s, so 105 tokens/s.
    tokens, minutes, rate, wall = trained_line(summarize(write_run(tmp_path / "run")))
    assert tokens == 5000
    assert rate * minutes * 60 == pytest.approx(tokens, rel=0.07)  # consistent up to rounding
    assert rate == pytest.approx(5000 / 47.5, abs=0.5)
    assert minutes == pytest.approx(47.5 / 60, abs=0.05)
    assert wall is not None and wall == pytest.approx(72.5 / 60, abs=0.05)


def test_summary__wall_clock_adds_up_the_processes_of_a_resumed_run(tmp_path):
    # Catches taking the last wall_seconds of a resumed run (its clock restarts at 0 in the new
    # process): 30 s + 20 s of wall clock, not 20 s.
    train = {"step": [10, 20, 30, 40], "tokens": [1000, 2000, 3000, 4000], "loss": [3.0, 2.5, 2.0, 1.8],
             "lr": [1e-3] * 4, "grad_norm": [1.0] * 4, "tokens_per_second": [100.0] * 4,
             "wall_seconds": [12.0, 30.0, 11.0, 20.0]}
    tokens, minutes, rate, wall = trained_line(summarize(write_run(tmp_path / "run", train=train)))
    assert (tokens, rate) == (4000, 100.0)
    assert wall is not None and wall == pytest.approx(50 / 60, abs=0.05)


def induction_block(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("induction"))
    return [lines[start]] + [l for l in lines[start + 1:] if l.startswith(("head ", "           "))]


def phase_attrs() -> dict:
    """The phase attributes analyse_phase stores for a run whose head 1.0 formed at ~1e6 tokens
    (prefix matching 0.73 over a null of 0.03) and whose head 1.1 is still rising at the end
    (0.05 -> 0.11 over the null, not passing yet)."""
    tokens = np.r_[0.0, np.geomspace(1e4, 8e6, 60)]
    x = np.log10(np.maximum(tokens, 1))
    prefix = np.full((tokens.size, 2, 2), 0.03)
    prefix[1:, 1, 0] += 0.7 / (1 + np.exp(-(x[1:] - 6.0) / 0.03))
    prefix[1:, 1, 1] += 0.12 / (1 + np.exp(-(x[1:] - np.log10(7e6)) / 0.1))
    null, se = np.full_like(prefix, 0.03), np.full_like(prefix, 0.002)
    report = analyse_phase(tokens, np.zeros(tokens.size), tokens, np.zeros(tokens.size), prefix,
                           np.full_like(prefix, 0.8), n_boot=10, null=null, prefix_stderr=se, null_stderr=se)
    assert report.trends[(1, 0)].label == "formed" and report.trends[(1, 1)].label == "forming"
    return {k.removeprefix("phase/"): v for k, v in report.to_flat_dict().items()}


def test_summary__each_labelled_head_with_its_label_and_evidence(tmp_path):
    # Catches the cliff wording ("holds prefix matching above 0.5", "passes 0.4") and a summary
    # that names heads without the evidence: score, null, z, copying and the slope, for every
    # labelled head, a forming one that does not pass yet included; keys read back from what
    # analyse_phase stores (a renamed attribute would print nan).
    block = induction_block(summarize(write_run(tmp_path / "run", phase=phase_attrs())))
    assert block[0].startswith("induction  1.0 formed, 1.1 forming (rule: prefix matching above its null by z > 4")
    formed, forming = block[1], block[2]
    assert re.match(r"head 1\.0 +formed: prefix matching 0\.73 vs null 0\.03 \(effect \+0\.70, z \d{3}\.\d\), "
                    r"OV copying \+0\.80; last \d+ checkpoints [+-]\d\.\d\d per decade \(z ", formed), formed
    assert re.search(r"half its final score at (0\.9\d|1\.0\d)M tokens \(\d\.\d min of training\)", formed)
    assert "nan" not in formed
    assert forming.startswith("head 1.1   forming (not passing yet): prefix matching 0.1") and "nan" not in forming
    assert not any("0.5" in line or "above 0.4" in line for line in block)


def test_summary__old_rule_and_not_yet_analysed_are_said_so(tmp_path):
    # Catches a silent fallback: an analysis without the null is classified by the old rule and
    # the summary says so with the command that measures the null; an analysis by an older
    # interp (heads, no labels) and a run not analysed at all say what to run.
    legacy = {**phase_attrs(), "induction_rule": "legacy"}
    text = summarize(write_run(tmp_path / "legacy", phase=legacy))
    assert "old rule: prefix matching > 0.4 and OV copying > 0" in text and "--redo" in text
    older = summarize(write_run(tmp_path / "older", phase={"induction_heads": "1.0", "has_window": 0.0}))
    assert "induction  heads 1.0 by the old rule" in older
    none = summarize(write_run(tmp_path / "none", prefix_last=0.45))
    assert "induction  not classified yet: 'interp analyze" in none
    assert "passes" not in none and "above 0.5" not in none


def test_summary__no_labelled_head(tmp_path):
    # Catches an empty head list printed as "induction   (rule ...)" or as an error.
    attrs = {**phase_attrs(), "head_labels": "", "induction_heads": ""}
    block = induction_block(summarize(write_run(tmp_path / "run", n_layers=1, phase=attrs)))
    assert block[0].startswith("induction  no head formed, forming or fading (rule:") and len(block) == 1


def test_report_window_line__states_the_evidence_and_an_open_end():
    """A window is never printed without its z, step z and the noise they were measured
    against; an open end says the score was still falling. No window: no numbers."""
    from interp.report import window_line

    phase = {"window_start_tokens": 2.29e6, "window_end_tokens": 3.77e6, "icl_band_half_width": 5,
             "icl_before": -0.004, "icl_after": -0.421, "icl_exact_before": -0.1, "icl_exact_after": -0.3,
             "window_share": 0.74, "window_z": 9.23, "window_step_z": 5.41, "window_noise_white": 0.0113,
             "window_noise_walk": 0.0151, "window_open_end": 0.0}
    line = window_line(phase)
    assert "2.29M-3.77M" in line and "z 9.2, step z 5.4" in line
    assert "jitter 0.011 + walk 0.015 nats per checkpoint" in line and "still falling" not in line
    assert "still falling at the end of the run" in window_line({**phase, "window_open_end": 1.0})
    assert window_line({}) == "phase      no phase change: the smoothed ICL score has no falling stretch to test"
    miss = {"miss_start_tokens": 2.29e6, "miss_end_tokens": 3.60e6, "miss_drop": 0.301, "miss_z": 6.8,
            "miss_step_z": 3.7, "miss_failed": "step z 3.7 < 4"}
    line = window_line(miss)  # no window, but the closest candidate and what it failed
    assert "2.29M-3.60M tokens (drop 0.301 nats, z 6.8, step z 3.7), fails step z 3.7 < 4" in line


def test_quickstart_time_line__each_part_from_its_own_two_clock_readings():
    from interp.cli import _time_line

    line = _time_line([100.0, 460.0, 568.0, 580.0])
    assert line.startswith("time ") and "8.0 min:" in line
    assert "training 6.0 " in line and "analysis 1.8," in line and "figures 0.2" in line


def test_report_lag_line__says_why_there_is_no_lag_instead_of_nan():
    # Catches "+nan log10 tokens (90% interval +nan..+nan)" for a formed head of a run with no
    # window (the held-aside Jargon File run of docs/PRESETS.md), and a lag dropped when there is one.
    from interp.report import _head_lines

    no_window = _head_lines({}, {"induction_heads": "1.3"})
    assert no_window == ["lag 1.3     to the ICL change: none (no phase-change window)"]
    with_lag = _head_lines({}, {"induction_heads": "1.3", "window_start_tokens": 1e6, "window_end_tokens": 2e6,
                                "head_1.3_lag_log10": 0.1, "head_1.3_lag_low": -0.2, "head_1.3_lag_high": 0.18})
    assert with_lag == ["lag 1.3     to the ICL change +0.100 log10 tokens (90% interval -0.200..+0.180)"]
    unestimable = _head_lines({}, {"induction_heads": "1.3", "window_start_tokens": 1e6, "window_end_tokens": 2e6})
    assert unestimable == ["lag 1.3     to the ICL change: none (not estimable)"]
