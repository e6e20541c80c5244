"""interp.composition_trend on synthetic series with known answers (no model, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from interp.composition_trend import (Baseline, composition_trend, describe, previous_token_head,
                                      random_baseline, rise_statistic, window_from_phase)

TOKENS = np.concatenate([[0.0], np.geomspace(1e3, 1e7, 41)])  # init + 10 checkpoints per decade
WINDOW = (1e5, 1e6)  # both ends are checkpoints (decades 5 and 6)
X = np.log10(np.where(TOKENS > 0, TOKENS, 1.0))


def _step(lo: float, hi: float, start: float, end: float) -> np.ndarray:
    """lo before log10 ``start``, hi after log10 ``end``, linear in log tokens between."""
    return lo + (hi - lo) * np.clip((X - start) / (end - start), 0, 1)


def test_a_rise_entirely_inside_the_window__has_share_one_and_the_right_means():
    # Catches: share taken as (after - before) / total with means that blur the ends (gives < 1
    # only if the window were mislocated), a window read in tokens instead of log10 tokens
    # (interpolation at 1e5 on a log grid), and means that include the window's inside.
    r = rise_statistic(TOKENS, _step(0.1, 0.3, 5, 6), WINDOW)
    assert r.has_window and r.rises
    assert r.share == pytest.approx(1.0, abs=1e-9)
    assert r.before == pytest.approx(0.1) and r.after == pytest.approx(0.3)
    assert r.total == pytest.approx(0.2) and r.inside == pytest.approx(0.2)


def test_a_rise_entirely_before_the_window__has_share_zero():
    # Catches: a share computed from before/after means alone (that would call this rise "inside"
    # whenever after > before), and a window whose ends are swapped.
    r = rise_statistic(TOKENS, _step(0.1, 0.3, 3.5, 4.5), WINDOW)
    assert r.rises and r.share == pytest.approx(0.0, abs=1e-9)
    assert 0.1 < r.before < 0.3  # the mean before the window holds the rise itself
    assert r.after == pytest.approx(0.3)


def test_half_the_rise_inside__has_share_one_half():
    # Catches: a share clipped to {0, 1} or measured in checkpoint counts instead of score.
    r = rise_statistic(TOKENS, _step(0.1, 0.3, 5.5, 6.5), WINDOW)
    assert r.share == pytest.approx(0.5, abs=1e-9)


def test_a_flat_series__has_no_rise_and_no_share():
    # Negative control. Catches: a share computed as 0/0 or noise/noise (any number), and
    # "rises" decided by last >= first (true for a flat series).
    rng = np.random.default_rng(0)
    flat = 0.2 + 1e-4 * rng.standard_normal(len(TOKENS))
    r = rise_statistic(TOKENS, flat, WINDOW)
    assert not r.rises and math.isnan(r.share)
    assert "no change" in r.note
    assert r.before == pytest.approx(0.2, abs=1e-3) and r.after == pytest.approx(0.2, abs=1e-3)


def test_a_fall__is_not_a_rise_but_its_share_is_still_given():
    # Catches: "rises" taken from |total| (a fall would count as a rise).
    r = rise_statistic(TOKENS, _step(0.3, 0.1, 5, 6), WINDOW)
    assert not r.rises and r.share == pytest.approx(1.0)
    assert "falls" in r.note


def test_no_window__is_said_and_leaves_nan_fields():
    # Catches: a default window (e.g. the whole run) silently standing in for a missing one,
    # which would report share 1 for any rise.
    for window in (None, (float("nan"), float("nan"))):
        r = rise_statistic(TOKENS, _step(0.1, 0.3, 5, 6), window)
        assert not r.has_window and "no phase-change window" in r.note
        assert all(math.isnan(v) for v in (r.before, r.after, r.inside, r.share, r.at_start, r.at_end))
        assert r.rises and r.total == pytest.approx(0.2)  # these need no window


def test_the_initialisation_is_left_out():
    # Catches: the 0-token checkpoint taken as "first" (log10(0) = -inf also breaks interp).
    series = _step(0.1, 0.3, 5, 6)
    series[0] = 0.9  # an initialisation far off
    r = rise_statistic(TOKENS, series, WINDOW)
    assert r.first == pytest.approx(0.1) and r.share == pytest.approx(1.0)


def test_window_from_phase_attrs():
    assert window_from_phase({"window_start_tokens": 1e5, "window_end_tokens": 2e5}) == (1e5, 2e5)
    assert window_from_phase({"window_start_tokens": float("nan"), "window_end_tokens": float("nan")}) is None
    assert window_from_phase({}) is None


def _rows(n_layers: int = 3, n_heads: int = 2) -> dict[str, np.ndarray]:
    a = len(TOKENS)
    comp = np.full((a, n_layers, n_heads, n_layers, n_heads), np.nan)
    for l1 in range(n_layers):
        for l2 in range(l1 + 1, n_layers):
            comp[:, l1, :, l2, :] = 0.1
    comp[:, 0, 1, 2, 0] = _step(0.1, 0.4, 5, 6)  # head 0.1 -> head 2.0 rises inside the window
    comp[:, 1, 0, 2, 0] = _step(0.1, 0.2, 3.5, 4.5)  # head 1.0 -> head 2.0 rises before it
    prev = np.zeros((a, n_layers, n_heads))
    prev[:, 1, 1] = np.linspace(0.9, 0.0, a)  # the best previous-token head early on, not at the end
    prev[:, 0, 1] = np.linspace(0.0, 0.8, a)  # the previous-token head at the last checkpoint
    prev[:, 2, 1] = 1.0  # a later layer: never the previous-token head of a layer-2 head
    return {"tokens": TOKENS, "composition_k": comp, "previous_token": prev}


def test_composition_trend__every_earlier_head_and_the_previous_token_head():
    # Catches: earlier heads taken from the wrong axis ([l2, h2, l1, h1] instead of [l1, h1, l2, h2]),
    # the previous-token head chosen at the first checkpoint or from any layer, and layer-0 heads
    # given earlier heads.
    rows = _rows()
    trend = composition_trend(rows, 2, 0, WINDOW, Baseline("k", 0.1, 0.01, 64, 64, 32))
    assert [e.name for e in trend.earlier] == ["0.0", "0.1", "1.0", "1.1"]
    assert trend.previous_token_head == (0, 1) and trend.previous.name == "0.1"
    assert trend.of(0, 1).rise.share == pytest.approx(1.0)
    assert trend.of(1, 0).rise.share == pytest.approx(0.0, abs=1e-9)
    assert not trend.of(0, 0).rise.rises  # flat at the baseline
    assert len(trend.tokens) == len(TOKENS) - 1 and len(trend.of(0, 1).series) == len(TOKENS) - 1
    assert previous_token_head(rows, 1) == (0, 1)
    assert composition_trend(rows, 0, 1, WINDOW).earlier == [] and previous_token_head(rows, 0) is None
    line = describe(trend)
    assert line.startswith("K-composition with previous-token head 0.1: 0.10 -> 0.40")
    assert "baseline 0.10 +- 0.010" in line and "100% of the rise (0.10 -> 0.40)" in line
    assert "no phase-change window" in describe(composition_trend(rows, 2, 0, None))
    with pytest.raises(KeyError):
        trend.of(2, 1)


def test_random_baseline__mean_and_spread_of_single_random_pairs():
    # Catches: the sd of the mean (about sd / 8 for 64 samples) reported as the spread of a pair,
    # and a baseline that is not the library's (its mean must agree with composition_baseline).
    from interp.measures.circuits import composition_baseline

    b = random_baseline(32, 16, n_samples=24)
    assert b == random_baseline(32, 16, n_samples=24)  # deterministic
    library = composition_baseline(32, 16)["k"]
    assert abs(b.mean - library) < 3 * b.sd / np.sqrt(24) + 3 * b.sd / np.sqrt(32)
    assert 0.003 < b.sd < 0.05  # single pairs at d_model 32, d_head 16 spread by ~0.013


def test_report__writes_the_composition_figure_and_a_line_per_induction_head(tmp_path):
    # Catches: the figure or the text line dropped for a head, the window not passed on (the line
    # would say "no phase-change window"), and layer-0 induction heads given a panel.
    import matplotlib

    matplotlib.use("Agg")
    from interp import report

    rows = _rows()
    a, n_layers, n_heads = len(TOKENS), 3, 2
    rows.update(prefix_matching=np.zeros((a, n_layers, n_heads)), copying_ov=np.zeros((a, n_layers, n_heads)))
    phase = {"induction_heads": "0.0,2.0", "window_start_tokens": WINDOW[0], "window_end_tokens": WINDOW[1]}
    baseline = Baseline("k", 0.1, 0.01, 64, 64, 32)
    path = report.figure_composition(tmp_path / "synthetic", rows, phase, tmp_path, baseline)
    assert path == tmp_path / "synthetic_composition.png" and path.stat().st_size > 10_000
    lines = report._head_lines(rows, phase, baseline)
    assert "K-composition: no earlier-layer head" in lines[1]
    assert "previous-token head 0.1: 0.10 -> 0.40" in lines[3] and "100% of the rise" in lines[3]
    assert report.figure_composition(tmp_path / "none", rows, {"induction_heads": "0.1"}, tmp_path, baseline) is None
