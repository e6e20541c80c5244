"""Analytic and property tests of interp.phase.lag and interp.phase.heads (mutation survivors)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import interp.phase.lag as lag_module
from interp.phase.heads import InductionRule, classify_induction_heads, formation_time, formation_x
from interp.phase.lag import _bootstrap_series, _spacing, formation_lag
from interp.phase.noise import block_length
from interp.phase.smoothing import BANDWIDTH
from interp.phase.window import PhaseWindow

GRID = np.array([0.0, 1.0, 3.0, 6.0, 10.0])  # gaps 1, 2, 3, 4 (widening)
SHRINK = np.array([0.0, 4.0, 7.0, 9.0, 10.0])  # gaps 4, 3, 2, 1 (narrowing)


def window(start: float, end: float, peak: float) -> PhaseWindow:
    """A PhaseWindow with only the token positions set (the rest is not read by formation_lag)."""
    values = {f.name: 0.0 for f in dataclasses.fields(PhaseWindow)
              if f.default is dataclasses.MISSING}
    values.update(start_tokens=start, end_tokens=end, peak_tokens=peak, n_inside=1)
    return PhaseWindow(**values)


# ---------------------------------------------------------------- _spacing

# kills lag._spacing 20, 22, 26, 27 (between checkpoints: only the enclosing gap)
def test_spacing__between_checkpoints_is_the_enclosing_gap():
    assert _spacing(GRID, 2.0) == 2.0
    assert _spacing(GRID, 4.5) == 3.0


# kills lag._spacing 19, 34, 40, 43 (between checkpoints where the previous gap is wider)
def test_spacing__ignores_the_wider_gap_before_the_enclosing_one():
    assert _spacing(SHRINK, 8.0) == 2.0
    assert _spacing(SHRINK, 5.0) == 3.0


# kills lag._spacing 21, 23, 24, 25, 29 (on a checkpoint: the wider of its two gaps)
def test_spacing__on_a_checkpoint_takes_the_wider_neighbouring_gap():
    assert _spacing(GRID, 3.0) == 3.0
    assert _spacing(GRID, 6.0) == 4.0
    assert _spacing(SHRINK, 4.0) == 4.0


# kills lag._spacing 14, 5, 15, 28, 30, 41 (at or past the last checkpoint: the last gap)
def test_spacing__at_and_past_the_last_checkpoint_is_the_last_gap():
    assert _spacing(GRID, 10.0) == 4.0
    assert _spacing(GRID, 20.0) == 4.0
    assert _spacing(GRID, 8.0) == 4.0


# kills lag._spacing 4, 13 (at or before the first checkpoint: the first gap)
def test_spacing__at_and_before_the_first_checkpoint_is_the_first_gap():
    assert _spacing(GRID, -1.0) == 1.0
    assert _spacing(GRID, 0.5) == 1.0
    assert _spacing(GRID, 0.0) == 1.0


# ---------------------------------------------------------------- _bootstrap_series

# kills lag._bootstrap_series 15 (residuals are added, not subtracted); row 0 is the smoothed series
def test_bootstrap_series__row_zero_is_the_level_and_rows_add_resampled_residuals():
    y = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    level_map = np.zeros((y.size, y.size))  # level 0: the residuals are y itself
    draws = _bootstrap_series(level_map, y, 50, np.random.default_rng(0))
    assert draws.shape == (51, y.size)
    np.testing.assert_array_equal(draws[0], 0.0)
    assert np.isin(draws[1:], y).all()  # every value is one of the (positive) residuals

    level_map = np.eye(y.size)  # level = y: zero residuals, every row is the level
    draws = _bootstrap_series(level_map, y, 5, np.random.default_rng(0))
    np.testing.assert_allclose(draws, np.broadcast_to(y, draws.shape))


# ---------------------------------------------------------------- formation_lag: early return

# kills lag.formation_lag 42, 51-69 (fewer than 3 checkpoints: every field of the early Lag)
def test_formation_lag__two_checkpoints_give_the_point_lag_without_interval():
    tokens = np.array([1e4, 1e5])
    got = formation_lag(1e5, window(1e4, 1e5, 1e4), tokens, np.array([2.0, 1.0]), tokens,
                        np.array([0.1, 0.9]), n_boot=10)
    assert got.lag_log10 == 1.0
    assert got.ratio == 10.0 ** 1.0
    assert got.head_tokens == 1e5 and got.icl_tokens == 1e4
    assert got.resolution_log10 == pytest.approx(1.0)
    assert math.isnan(got.low) and math.isnan(got.high)
    assert got.n_boot == 0 and got.block == 1
    assert not got.resolved


# kills lag.formation_lag 23, 40 (one checkpoint: no spacing, resolution NaN)
def test_formation_lag__one_checkpoint_has_no_resolution():
    tokens = np.array([1e4])
    got = formation_lag(1e4, window(1e4, 1e4, 1e4), tokens, np.array([1.0]), tokens,
                        np.array([1.0]), n_boot=10)
    assert got.lag_log10 == 0.0 and got.ratio == 1.0
    assert math.isnan(got.resolution_log10)


# kills lag.formation_lag 41 (two checkpoints do have a resolution)
def test_formation_lag__two_checkpoints_have_a_resolution():
    tokens = np.array([1e4, 1e6])
    got = formation_lag(1e5, window(1e4, 1e6, 1e5), tokens, np.array([2.0, 1.0]), tokens,
                        np.array([0.1, 0.9]), n_boot=5)
    assert got.resolution_log10 == pytest.approx(2.0)


# kills lag.formation_lag 49, 50 (a single resample is still a bootstrap)
def test_formation_lag__one_resample_is_reported():
    tokens, icl, head = drop_run()
    got = formation_lag(3e5, window(1e5, 1e6, 3e5), tokens, icl, tokens, head, n_boot=1)
    assert got.n_boot == 1


# kills lag.formation_lag 47, 48 (three checkpoints are enough to bootstrap)
def test_formation_lag__three_checkpoints_are_bootstrapped():
    tokens = np.array([1e4, 1e5, 1e6])
    got = formation_lag(1e5, window(1e4, 1e6, 1e5), tokens, np.array([3.0, 2.0, 1.0]), tokens,
                        np.array([0.1, 0.5, 0.9]), n_boot=20)
    assert got.n_boot == 20
    assert got.block == block_length(3)


# ---------------------------------------------------------------- formation_lag: bootstrap

def drop_run(seed: int = 0, n: int = 41):
    """Log-spaced tokens 1e3..1e7, a noisy ICL drop at 1e5 and a noisy head rise at 10^5.2."""
    tokens = np.logspace(3, 7, n)
    x = np.log10(tokens)
    rng = np.random.default_rng(seed)
    icl = 3.0 - 1.0 / (1.0 + np.exp(-(x - 5.0) / 0.1)) + rng.normal(0, 0.03, n)
    head = 0.8 / (1.0 + np.exp(-(x - 5.2) / 0.1)) + rng.normal(0, 0.03, n)
    return tokens, icl, head


# kills lag.formation_lag 1, 2 (defaults: 1000 resamples, seed 0), 197, 198 (token fields)
def test_formation_lag__defaults_are_1000_resamples_and_seed_0():
    tokens, icl, head = drop_run()
    args = (2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head)
    got = formation_lag(*args)
    assert got == formation_lag(*args, n_boot=1000, seed=0)
    assert got.n_boot == 1000
    assert got.head_tokens == 2e5 and got.icl_tokens == 1e5
    assert got.lag_log10 == pytest.approx(math.log10(2e5) - 5.0)
    assert got.ratio == pytest.approx(2.0)
    assert got.block == block_length(tokens.size)
    assert got.low <= got.lag_log10 <= got.high


class Spy:
    """Wraps vertex and formation_x in interp.phase.lag, recording arguments and results."""

    def __init__(self, monkeypatch, head_override=None):
        self.vertex_calls, self.formation_calls = [], []
        real_vertex, real_formation = lag_module.vertex, lag_module.formation_x

        def vertex(x, values, i):
            out = real_vertex(x, values, i)
            self.vertex_calls.append((np.array(i), out))
            return out

        def formation(x, scores, threshold):
            out = real_formation(x, scores, threshold)
            if head_override is not None:
                out = head_override(out)
            self.formation_calls.append((scores.copy(), threshold.copy(), out))
            return out

        monkeypatch.setattr(lag_module, "vertex", vertex)
        monkeypatch.setattr(lag_module, "formation_x", formation)


# kills lag.formation_lag 167, 188, 194 (basic bootstrap from lags = head - icl, q5/q95)
def test_formation_lag__interval_is_the_basic_bootstrap_of_head_minus_icl(monkeypatch):
    tokens, icl, head = drop_run()
    spy = Spy(monkeypatch)
    got = formation_lag(2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head, n_boot=400)
    (_, icl_boot), = spy.vertex_calls
    (_, _, head_boot), = spy.formation_calls
    lags = head_boot - icl_boot
    d = lags[1:] - lags[0]
    d = d[np.isfinite(d)]
    assert d.size > 300 and np.ptp(d) > 0
    assert got.low == pytest.approx(got.lag_log10 - np.percentile(d, 95), abs=1e-12)
    assert got.high == pytest.approx(got.lag_log10 - np.percentile(d, 5), abs=1e-12)


def _with_row_nan(row):
    def spoil(out):
        out = out.copy()
        out[row] = np.nan
        return out
    return spoil


# kills lag.formation_lag 179, 182 (smoothed series' head never forms: no interval, no error)
# and 177 (a failed first resample is dropped, it does not void the interval)
@pytest.mark.parametrize("row", [0, 1])
def test_formation_lag__a_lost_smoothed_lag_gives_no_interval_a_lost_resample_is_dropped(monkeypatch, row):
    tokens, icl, head = drop_run()
    Spy(monkeypatch, _with_row_nan(row))
    got = formation_lag(2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head, n_boot=50)
    if row == 0:
        assert math.isnan(got.low) and math.isnan(got.high)
        assert got.n_boot == 50
    else:
        assert np.isfinite(got.low) and np.isfinite(got.high)
        assert got.low <= got.high


# kills lag.formation_lag 139 (an explicit threshold is used for every resample)
def test_formation_lag__explicit_threshold_reaches_every_resample(monkeypatch):
    tokens, icl, head = drop_run()
    spy = Spy(monkeypatch)
    formation_lag(2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head, n_boot=30, threshold=0.3)
    (scores, threshold, _), = spy.formation_calls
    assert scores.shape == (31, tokens.size)
    np.testing.assert_array_equal(threshold, 0.3)


# kills lag.formation_lag 164 (a zero threshold means "never", passed on as NaN)
def test_formation_lag__zero_threshold_is_passed_as_nan(monkeypatch):
    tokens, icl, head = drop_run()
    spy = Spy(monkeypatch)
    got = formation_lag(2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head, n_boot=10,
                        threshold=0.0)
    (_, threshold, head_boot), = spy.formation_calls
    assert np.isnan(threshold).all() and np.isnan(head_boot).all()
    assert math.isnan(got.low)


# kills lag.formation_lag 142, 143 (threshold=None: half of each resample's final score);
# and row 0 of the head resamples is the smoothed head series
def test_formation_lag__default_threshold_is_half_each_final_score(monkeypatch):
    tokens, icl, head = drop_run()
    spy = Spy(monkeypatch)
    formation_lag(2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head, n_boot=30)
    (scores, threshold, _), = spy.formation_calls
    np.testing.assert_allclose(threshold, scores[:, -1] / 2)
    head_map, _ = lag_module.local_linear(np.log10(tokens), BANDWIDTH)
    np.testing.assert_allclose(scores[0], head_map @ head)


# kills lag.formation_lag 74, 127 (both series are smoothed with the given bandwidth)
def test_formation_lag__bandwidth_reaches_both_smoothers(monkeypatch):
    tokens, icl, head = drop_run()
    seen = []
    real = lag_module.local_linear

    def local_linear(x, *args, **kwargs):
        seen.append(args[0] if args else kwargs.get("bandwidth", "default"))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(lag_module, "local_linear", local_linear)
    formation_lag(2e5, window(3e4, 3e5, 1e5), tokens, icl, tokens, head, n_boot=5, bandwidth=0.2)
    assert seen == [0.2, 0.2]


def peaks_for(monkeypatch, start_index: int, end_index: int, n: int = 41):
    """The peak indices every resample used, for a window between two checkpoints (inclusive)."""
    tokens, icl, head = drop_run(n=n)
    spy = Spy(monkeypatch)
    formation_lag(2e5, window(tokens[start_index], tokens[end_index], tokens[start_index]),
                  tokens, icl, tokens, head, n_boot=40)
    (peaks, _), = spy.vertex_calls
    return peaks


# kills lag.formation_lag 85, 87, 89, 91, 93 (search only the window's checkpoints, bounds
# inclusive; the drop at index 20 lies within a decade on either side)
@pytest.mark.parametrize("index", [14, 26])
def test_formation_lag__peak_search_is_restricted_to_a_one_checkpoint_window(monkeypatch, index):
    np.testing.assert_array_equal(peaks_for(monkeypatch, index, index), index)


# kills lag.formation_lag 103, 104, 113, 114, 115 (peaks clipped to interior checkpoints)
@pytest.mark.parametrize("index, clipped", [(0, 1), (1, 1), (39, 39), (40, 39)])
def test_formation_lag__peak_is_clipped_to_an_interior_checkpoint(monkeypatch, index, clipped):
    np.testing.assert_array_equal(peaks_for(monkeypatch, index, index), clipped)


# ---------------------------------------------------------------- classify_induction_heads

# kills heads.classify 15 (strict >: a score exactly at either threshold is not enough)
def test_classify__thresholds_are_strict():
    prefix = np.array([[0.4, 0.41], [0.41, 0.9]])
    copy = np.array([[0.5, 0.0], [0.1, 0.2]])
    assert classify_induction_heads(prefix, copy) == [(1, 0), (1, 1)]
    assert classify_induction_heads(prefix, copy, rule=InductionRule(legacy_prefix=0.41)) == [(1, 1)]


# kills heads.classify 5, 7, 10, 12 (scores converted to float: missing (None) and NaN are "no")
def test_classify__missing_and_nan_scores_never_qualify():
    prefix = [[0.9, None, 0.9], [np.nan, 0.9, 0.9]]
    copy = [[0.5, 0.5, None], [0.5, np.nan, 0.5]]
    assert classify_induction_heads(prefix, copy) == [(0, 0), (1, 2)]


# ---------------------------------------------------------------- formation_x / formation_time

X = np.array([1.0, 2.0, 3.0, 4.0])


# kills heads.formation_x 92, 42 (forms at checkpoint 1: interpolated between 0 and 1)
def test_formation_x__interpolates_a_crossing_after_the_first_checkpoint():
    got = formation_x(X, np.array([[0.2, 0.6, 0.7, 0.8]]), np.array([0.4]))
    np.testing.assert_allclose(got, [1.5])


# kills heads.formation_x 26, 85 (above from the first checkpoint on: forms at x[0], even falling)
def test_formation_x__above_from_the_start_forms_at_the_first_checkpoint():
    got = formation_x(X, np.array([[0.9, 0.8, 0.7, 0.6]]), np.array([0.5]))
    np.testing.assert_array_equal(got, [1.0])


# kills heads.formation_x 44 (forms only at the last checkpoint)
def test_formation_x__crossing_into_the_last_checkpoint():
    got = formation_x(X, np.array([[0.1, 0.6, 0.2, 0.8]]), np.array([0.5]))
    np.testing.assert_allclose(got, [3.0 + 0.3 / 0.6])


# kills heads.formation_x 2 (ending exactly at the threshold is not above it)
def test_formation_x__ending_at_the_threshold_never_forms():
    got = formation_x(X, np.array([[0.1, 0.2, 0.3, 0.5]]), np.array([0.5]))
    assert np.isnan(got).all()


# kills heads.formation_x 4, 18, 20 (rows are independent)
def test_formation_x__rows_are_independent():
    scores = np.array([[0.9, 0.9, 0.9, 0.9],
                       [0.1, 0.1, 0.9, 0.9],
                       [0.1, 0.9, 0.1, 0.9]])
    got = formation_x(X, scores, np.array([0.5, 0.5, 0.5]))
    np.testing.assert_allclose(got, [1.0, 2.5, 3.5])


# kills heads.formation_x 79, 80 (a NaN before the crossing: forms at the checkpoint itself)
def test_formation_x__nan_before_the_crossing_forms_at_the_checkpoint():
    got = formation_x(X, np.array([[0.1, np.nan, 0.9, 0.9]]), np.array([0.5]))
    np.testing.assert_array_equal(got, [3.0])


# kills heads.formation_x 51, 52, 53, 54 (flat series divide 0/0 and x/0 without warnings)
def test_formation_x__flat_series_raise_no_floating_point_error():
    scores = np.array([[0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]])
    with np.errstate(all="raise"):
        got = formation_x(X, scores, np.array([0.5, 0.5]))
    assert np.isnan(got).all()


# kills heads.formation_time 7 (no checkpoints: None; one checkpoint above: forms there)
def test_formation_time__empty_and_single_checkpoint():
    assert formation_time(np.array([0.0, 0.0]), np.array([0.1, 0.9])) is None
    assert formation_time(np.array([1e5]), np.array([0.9])) == pytest.approx(1e5)
    assert formation_time(np.array([1e5]), np.array([0.9]), threshold=0.5) == pytest.approx(1e5)


# exact interpolation in log10 tokens on a hand-made step series
def test_formation_time__interpolates_in_log_tokens():
    tokens = np.array([1e3, 1e4, 1e5, 1e6])
    scores = np.array([0.0, 0.2, 0.6, 0.8])  # half of 0.8 = 0.4, halfway from 1e4 to 1e5
    assert formation_time(tokens, scores) == pytest.approx(10 ** 4.5)
    assert formation_time(tokens, scores, threshold=0.9) is None
    assert formation_time(tokens, np.array([0.0, 0.2, 0.6, -0.8])) is None
