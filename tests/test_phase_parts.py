"""Unit tests of the parts of interp.phase (bump, noise, report, synthetic) with analytic answers.

Written against the surviving mutants of /work/runs/mut_phase.md; each test names those it kills.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from interp.phase.bump import LossBump, _binned, loss_bump, lower_hull
from interp.phase.heads import InductionRule
from interp.phase.lag import Lag
from interp.phase.noise import (IncrementNoise, NoiseModel, _nonnegative_least_squares, block_bootstrap,
                                block_length, increment_noise)
from interp.phase.report import PhaseReport, analyse_phase
from interp.phase.smoothing import local_linear
from interp.phase.synthetic import (DEFAULT_RUN_TOKENS, NOISE_SD, NULLS, ar1, drop_series,
                                    loss_like_decline, null_series, power_decline, random_walk,
                                    sigmoid_drop)
from interp.phase.window import PhaseWindow

# --------------------------------------------------------------------------- bump: _binned


# kills bump _binned_6 (size 2 not binned), _binned_7 (incomplete group not dropped)
def test_binned__means_of_pairs_drop_the_incomplete_last_group():
    x, y = np.arange(11.0), 10 * np.arange(11.0)
    bx, by = _binned(x, y, 5)  # ceil(11 / 5) = 3 per group, 3 groups, the 11th-12th dropped
    np.testing.assert_allclose(bx, [1, 4, 7])
    np.testing.assert_allclose(by, [10, 40, 70])
    bx, by = _binned(np.arange(10.0), np.arange(10.0), 5)  # groups of 2
    np.testing.assert_allclose(bx, [0.5, 2.5, 4.5, 6.5, 8.5])
    bx, by = _binned(np.arange(9.0), np.arange(9.0), 4)  # groups of 3, all complete
    np.testing.assert_allclose(by, [1, 4, 7])


def test_binned__few_points_unchanged():
    x = np.arange(4.0)
    bx, by = _binned(x, -x, 10)
    np.testing.assert_array_equal(bx, x)
    np.testing.assert_array_equal(by, -x)


# --------------------------------------------------------------------------- bump: lower_hull


# kills lower_hull_3, _4 (popping starts with two points on the hull)
def test_lower_hull__hand_made_points():
    x = np.array([0.0, 1, 2, 3, 4, 5])
    # 1 at x=1 is above the chord 0..2 -> bridged; the rest is convex.
    y = np.array([0.0, 1.0, 0.0, 0.5, 2.0, 5.0])
    np.testing.assert_allclose(lower_hull(x, y), [0, 0, 0, 0.5, 2.0, 5.0])
    # Three points, the middle one above the chord: needs popping with exactly 2 on the hull.
    np.testing.assert_allclose(lower_hull(np.array([0.0, 1, 2]), np.array([0.0, 3, 0])), [0, 0, 0])
    # A concave run: every inner point is popped, the hull is the chord of the ends.
    xs = np.linspace(0, 1, 7)
    np.testing.assert_allclose(lower_hull(xs, -xs ** 2), -xs)
    # never above the points, and equal to them at the ends
    rng = np.random.default_rng(0)
    yy = rng.standard_normal(30)
    xx = np.sort(rng.uniform(0, 1, 30))
    hull = lower_hull(xx, yy)
    assert np.all(hull <= yy + 1e-12)
    assert hull[0] == yy[0] and hull[-1] == yy[-1]
    assert np.all(np.diff(np.diff(hull) / np.diff(xx)) >= -1e-9)  # convex


# --------------------------------------------------------------------------- bump: loss_bump

TOKENS = np.logspace(4, 7, 120)
X = np.log10(TOKENS)


def bumped(height=0.1, centre=1e6, width=0.08):
    convex = 2.0 + 4.0 * (TOKENS / 4e4) ** -0.35
    return convex + height * np.exp(-0.5 * (np.log10(TOKENS / centre) / width) ** 2)


def expected_run(above: np.ndarray, peak: int) -> tuple[int, int]:
    """The maximal run of True in ``above`` around ``peak``, found via run boundaries."""
    edges = np.flatnonzero(np.diff(np.r_[0, above.astype(int), 0]))
    starts, ends = edges[::2], edges[1::2] - 1
    k = int(np.flatnonzero((starts <= peak) & (peak <= ends))[0])
    return int(starts[k]), int(ends[k])


# kills loss_bump_88, _91, _92, _93, _95, _100, _101, _104, _116, _120
def test_loss_bump__start_end_peak_of_a_noiseless_bump():
    loss = bumped()
    bump = loss_bump(TOKENS, loss, start_tokens=2e4, min_height=0.01)
    assert isinstance(bump, LossBump)
    # ground truth from the parts: smoothed, hull, deviation above the tolerance
    level, _ = local_linear(X, 0.05)
    smooth = level @ loss
    first = int(np.searchsorted(X, math.log10(2e4)))
    xs, sm = X[first:], smooth[first:]
    deviation = sm - lower_hull(xs, sm)
    assert bump.tolerance >= 0.01
    above = deviation > bump.tolerance
    peak = int(np.argmax(np.where(above, deviation, -np.inf)))
    lo, hi = expected_run(above, peak)
    assert 0 < lo < peak < hi < xs.size - 1
    assert bump.start_tokens == pytest.approx(10 ** xs[lo], rel=1e-9)
    assert bump.end_tokens == pytest.approx(10 ** xs[hi], rel=1e-9)
    assert bump.peak_tokens == pytest.approx(10 ** xs[peak], rel=1e-9)
    assert bump.height == pytest.approx(deviation[peak])
    # the tokens are checkpoint token counts
    for value in (bump.start_tokens, bump.end_tokens, bump.peak_tokens):
        assert np.min(np.abs(TOKENS / value - 1)) < 1e-9
    assert bump.start_tokens < 1e6 < bump.end_tokens


# kills loss_bump_88, _89, _90, _97, _98, _99 (a negative tolerance: every point is "above")
def test_loss_bump__negative_tolerance_makes_the_whole_stretch_the_bump():
    loss = bumped()
    bump = loss_bump(TOKENS, loss, start_tokens=2e4, min_height=-1.0, z=-1.0)
    first = int(np.searchsorted(X, math.log10(2e4)))
    assert bump.start_tokens == pytest.approx(TOKENS[first], rel=1e-9)
    assert bump.end_tokens == pytest.approx(TOKENS[-1], rel=1e-9)


# kills loss_bump_75 (deviation equal to the tolerance is not a bump)
def test_loss_bump__convex_noiseless_curve_with_zero_tolerance_is_none():
    convex = 2.0 + 4.0 * (TOKENS / 4e4) ** -0.35
    assert loss_bump(TOKENS, convex, min_height=0.0, z=0.0, start_tokens=TOKENS[0]) is None


# kills loss_bump_25.._31 (start_tokens used), _34.._45 (end_tokens, side "right")
def test_loss_bump__start_and_end_tokens_bound_the_search():
    loss = bumped()
    full = loss_bump(TOKENS, loss, start_tokens=2e4, min_height=0.01)
    # a start after the bump: nothing left to find
    assert loss_bump(TOKENS, loss, start_tokens=5e6, min_height=0.01) is None
    # an end exactly at a checkpoint inside the bump: that checkpoint is the last one searched
    cut = TOKENS[int(np.searchsorted(TOKENS, full.peak_tokens * 1.0000001)) + 1]
    assert full.peak_tokens < cut < full.end_tokens
    capped = loss_bump(TOKENS, loss, start_tokens=2e4, end_tokens=cut, min_height=0.01)
    assert capped is not None
    assert capped.end_tokens <= cut * (1 + 1e-12)
    assert capped.end_tokens < full.end_tokens
    # the end point itself is included ("right"): three points ending at ``cut``
    i = int(np.flatnonzero(TOKENS == cut)[0])
    three = loss_bump(TOKENS, loss, start_tokens=TOKENS[i - 2], end_tokens=cut, min_height=-1.0, z=-1.0)
    assert three is not None and three.end_tokens == pytest.approx(cut, rel=1e-12)
    assert three.start_tokens == pytest.approx(TOKENS[i - 2], rel=1e-12)


# kills loss_bump_46 (end before start), _47, _48 (three points are enough)
def test_loss_bump__stretch_of_three_points_and_empty_stretch():
    loss = bumped()
    level, _ = local_linear(X, 0.05)
    smooth = level @ loss
    # find three consecutive points where the middle is above the chord
    mids = [i for i in range(1, X.size - 1)
            if smooth[i] - np.interp(X[i], X[[i - 1, i + 1]], smooth[[i - 1, i + 1]]) > 1e-4]
    i = mids[0]
    bump = loss_bump(TOKENS, loss, start_tokens=TOKENS[i - 1], end_tokens=TOKENS[i + 1], min_height=1e-5, z=0.0)
    assert bump is not None and bump.peak_tokens == pytest.approx(TOKENS[i], rel=1e-12)
    assert loss_bump(TOKENS, loss, start_tokens=TOKENS[i], end_tokens=TOKENS[i + 1], min_height=1e-5, z=0.0) is None
    assert loss_bump(TOKENS, loss, start_tokens=TOKENS[90], end_tokens=TOKENS[80], min_height=0.0, z=0.0) is None


# kills loss_bump_13, _14 (five points are enough to search)
def test_loss_bump__five_points_are_searched():
    tokens = np.logspace(4, 5, 5)
    loss = np.array([3.0, 2.0, 1.9, 1.85, 0.5])  # concave near the end
    bump = loss_bump(tokens, loss, start_tokens=tokens[0], min_height=-1.0, z=-1.0)
    assert bump is not None
    assert bump.start_tokens == pytest.approx(tokens[0]) and bump.end_tokens == pytest.approx(tokens[-1])
    assert loss_bump(tokens[:4], loss[:4], start_tokens=tokens[0], min_height=-1.0, z=-1.0) is None


# kills loss_bump_3 (z default 4), _4 (max_points default 1000), _19 (bandwidth passed on)
def test_loss_bump__defaults_and_bandwidth():
    rng = np.random.default_rng(1)
    tokens = np.arange(1, 2003) * 5000.0
    loss = (2.0 + 4.0 * (tokens / 4e4) ** -0.35 + 0.1 * np.exp(-0.5 * (np.log10(tokens / 1e6) / 0.1) ** 2)
            + 0.05 * rng.standard_normal(tokens.size))
    default = loss_bump(tokens, loss, min_height=0.0)
    assert default == loss_bump(tokens, loss, min_height=0.0, z=4.0, max_points=1000)
    assert default != loss_bump(tokens, loss, min_height=0.0, z=5.0)
    assert default != loss_bump(tokens, loss, min_height=0.0, max_points=1001)
    assert default.tolerance > 0
    assert default != loss_bump(tokens, loss, min_height=0.0, bandwidth=0.1)


# --------------------------------------------------------------------------- noise


def test_noise_model__covariance_entries():
    cov = NoiseModel(2.0, 0.5).covariance(4)
    i = np.arange(4)
    np.testing.assert_allclose(cov, 4.0 * 0.5 ** np.abs(i[:, None] - i[None, :]))
    assert cov[0, 3] == pytest.approx(4 * 0.125)


def test_noise_model__sd_of_hand_weights():
    model = NoiseModel(2.0, 0.5)
    # var(e0 - e1) = 2 s^2 (1 - rho) = 4; var(e0 + e1 + e2) = s^2 (3 + 4 rho + 2 rho^2) = 4 * 5.5
    np.testing.assert_allclose(model.sd_of(np.array([[1.0, -1.0], [1.0, 1.0]])), [2.0, math.sqrt(4 * 3.0)])
    assert model.sd_of(np.array([1.0, 1.0, 1.0])) == pytest.approx(math.sqrt(4 * 5.5))


# kills draw_6, _7, _16, _18, _20 (the recursion e_i = rho e_{i-1} + sqrt(1 - rho^2) u_i)
def test_noise_model__draw_follows_the_recursion_exactly():
    sigma, rho = 1.5, 0.6
    out = NoiseModel(sigma, rho).draw(np.random.default_rng(3), (2,), 4)
    u = np.random.default_rng(3).standard_normal((2, 4))
    e = np.empty_like(u)
    e[:, 0] = u[:, 0]
    for i in range(1, 4):
        e[:, i] = rho * e[:, i - 1] + math.sqrt(1 - rho ** 2) * u[:, i]
    np.testing.assert_allclose(out, sigma * e)


# kills draw_13, _16, _18 (marginal sd sigma at every position, lag-one correlation rho)
def test_noise_model__draw_marginal_sd_and_lag_one_correlation():
    sigma, rho = 2.0, 0.7
    paths = NoiseModel(sigma, rho).draw(np.random.default_rng(0), (40000,), 6)
    assert paths.shape == (40000, 6)
    np.testing.assert_allclose(paths.std(0), sigma, rtol=0.02)
    for i in range(5):
        assert np.corrcoef(paths[:, i], paths[:, i + 1])[0, 1] == pytest.approx(rho, abs=0.015)
    assert np.corrcoef(paths[:, 0], paths[:, 2])[0, 1] == pytest.approx(rho ** 2, abs=0.015)


# kills increment_noise mutants of the lag bookkeeping: a triple counts only if its whole span is kept
def test_increment_noise__triples_must_lie_inside_kept_checkpoints():
    """A step of 5 inside the left-out checkpoints 10..12: triples whose ends and centre are
    kept but whose span crosses the step (lags >= 3) must not count, or at lags near 6 they are
    the majority and the step passes for noise (negative control: everything kept)."""
    y = 0.01 * np.random.default_rng(0).standard_normal(30)
    y[11:] -= 5.0
    keep = np.ones(30, bool)
    keep[10:13] = False
    clean = increment_noise(y, keep, max_lag=6)
    assert clean.white < 0.03 and clean.walk < 0.03
    spoiled = increment_noise(y, np.ones(30, bool), max_lag=6)
    assert max(spoiled.white, spoiled.walk) > 0.3


# kills increment_noise mutants of the minimum counts (two lags of two triples each)
def test_increment_noise__needs_two_lags_of_two_triples():
    y = np.random.default_rng(1).standard_normal(7)
    keep = np.ones(7, bool)
    # 7 kept: lag 1 has 5 triples, lag 2 has 3, lag 3 has 1 (not enough): two lags
    assert math.isfinite(increment_noise(y, keep, max_lag=3).white)
    assert math.isnan(increment_noise(y[:4], keep[:4], max_lag=3).white)  # lag 1: 2, lag 2: 0
    assert math.isnan(increment_noise(y, keep, max_lag=1).white)
    five = increment_noise(y[:5], keep[:5], max_lag=2)  # lag 1: 3 triples, lag 2: 1
    assert math.isnan(five.white) and five.walk == 0.0


# kills increment_noise mutants of the count rule at exactly two triples (lag 2 of 6 checkpoints)
def test_increment_noise__two_triples_are_enough():
    y = np.random.default_rng(4).standard_normal(6)
    assert math.isfinite(increment_noise(y, np.ones(6, bool), max_lag=2).white)


def reference_increment_noise(y, keep, max_lag):
    """The docstring of increment_noise, written out: robust mean squares per lag, then two
    passes of weighted least squares (weights n_h / fitted^2, the first from the mean), each
    the best non-negative fit found by brute force over the active sets."""
    n = y.size
    rows = []
    for h in range(1, max_lag + 1):
        d = [y[i + h] - 2 * y[i] + y[i - h] for i in range(h, n - h) if keep[i - h:i + h + 1].all()]
        if len(d) >= 2:
            sq = np.array(d) ** 2
            cut = 10.827566170662733 * np.median(sq) / 0.454936423119572
            rows.append((h, sq[sq <= cut].mean() / 0.98828, len(d)))
    h, m, c = (np.array(v, float) for v in zip(*rows))
    design = np.stack([np.full_like(h, 6.0), 2 * h], 1)
    weight = c.copy()
    for _ in range(2):
        a, b = design * np.sqrt(weight)[:, None], m * np.sqrt(weight)
        fits = [np.linalg.lstsq(a, b, rcond=None)[0], np.array([max(0, a[:, 0] @ b / (a[:, 0] @ a[:, 0])), 0.0]),
                np.array([0.0, max(0, a[:, 1] @ b / (a[:, 1] @ a[:, 1]))])]
        fits = [f for f in fits if np.all(f >= 0)]
        coef = min(fits, key=lambda f: ((a @ f - b) ** 2).sum())
        weight = c / np.maximum(design @ coef, 1e-6 * m.mean()) ** 2
    return math.sqrt(coef[0]), math.sqrt(coef[1])


# kills increment_noise mutants of the weights and the number of passes (exact values on a
# series where both parts are positive and the fit is not exact, so every weight matters)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_increment_noise__equals_its_written_out_definition(seed):
    rng = np.random.default_rng(seed)
    y = np.cumsum(0.1 * rng.standard_normal(80)) + 0.1 * rng.standard_normal(80)
    keep = np.ones(80, bool)
    keep[30:38] = False
    fit = increment_noise(y, keep)
    white, walk = reference_increment_noise(y, keep, 10)
    assert white > 0 and walk > 0
    assert fit.white == pytest.approx(white, rel=1e-9) and fit.walk == pytest.approx(walk, rel=1e-9)


# kills _robust_mean_square's truncation constant used the wrong way round
def test_robust_mean_square__truncation_correction_by_hand():
    from interp.phase.noise import _robust_mean_square
    assert _robust_mean_square(np.ones(7)) == pytest.approx(1 / 0.98828, rel=1e-12)
    spoiled = np.r_[np.ones(9), 100.0]  # 100^2 is far beyond 10.83 x (1 / 0.4549)
    assert _robust_mean_square(spoiled) == pytest.approx(1 / 0.98828, rel=1e-12)


# kills IncrementNoise.sd_of mutants: a batch of rows (cumsum and sums along the last axis),
# the contrast tolerance scaled by the largest weight, and the message
def test_increment_noise_sd_of__rows_tolerance_and_message():
    model = IncrementNoise(0.2, 0.1)
    rows = np.array([[-1.0, 0.0, 1.0, 0.0], [0.0, 1.0, -2.0, 1.0]])
    expected = [math.sqrt(0.04 * 2 + 0.01 * 2), math.sqrt(0.04 * 6 + 0.01 * 2)]
    np.testing.assert_allclose(model.sd_of(rows), expected)
    model.sd_of(np.array([3.0, -3.0 + 2e-9]))  # within 1e-9 x the largest weight (3)
    with pytest.raises(ValueError, match=r"^IncrementNoise\.sd_of needs contrasts \(weights that sum to zero\)$"):
        model.sd_of(np.array([1.0, -1.0 + 1.5e-9]))  # beyond 1e-9 x 1
    with pytest.raises(ValueError):
        model.sd_of(np.array([0.5, -0.5 + 5e-9]))  # small weights: the tolerance stays 1e-9


# kills _nonnegative_least_squares mutants (each branch against a brute-force grid)
@pytest.mark.parametrize("b", [[6.0, 8.0, 10.0], [6.0, 6.0, 6.0], [6.0, 4.0, 2.0], [0.0, 2.0, 4.0], [-1.0, -2.0, -3.0]])
def test_nonnegative_least_squares__matches_a_grid(b):
    a = np.array([[6.0, 2.0], [6.0, 4.0], [6.0, 6.0]])
    b = np.array(b)
    coef = _nonnegative_least_squares(a, b)
    assert np.all(coef >= 0)
    grid = np.stack(np.meshgrid(np.linspace(0, 3, 301), np.linspace(0, 3, 301)), -1).reshape(-1, 2)
    best = grid[np.argmin(((grid @ a.T - b) ** 2).sum(1))]
    cost = float(((a @ coef - b) ** 2).sum())
    assert cost <= float(((a @ best - b) ** 2).sum()) + 1e-9


def test_increment_noise__fields_are_floats_and_a_white_series_has_no_walk_in_the_median():
    draws = np.random.default_rng(2).standard_normal((200, 76))
    fits = [increment_noise(d, np.ones(76, bool)) for d in draws]
    assert all(isinstance(f.white, float) and isinstance(f.walk, float) for f in fits)
    assert np.median([f.walk for f in fits]) < 0.05 and np.mean([f.walk == 0 for f in fits]) > 0.3
    assert np.median([f.white for f in fits]) == pytest.approx(1.0, abs=0.05)


# kills block_length_5
def test_block_length__ceil_of_cube_root():
    assert [block_length(n) for n in (0, 1, 2, 8, 9, 75, 125)] == [1, 1, 2, 2, 3, 5, 5]


# kills block_bootstrap_22 (first start drawn), _23 (last start drawn)
def test_block_bootstrap__every_start_possible_and_shapes():
    residuals = np.arange(10.0)
    paths = block_bootstrap(residuals, 500, np.random.default_rng(0), length=1)
    assert paths.shape == (500, 10)
    assert set(np.unique(paths)) == set(residuals)
    paths = block_bootstrap(residuals, 500, np.random.default_rng(0), length=3)
    assert paths.shape == (500, 10)
    assert paths[:, 0].min() == 0 and paths[:, 0].max() == 7  # starts 0..n-length
    # blocks of consecutive residuals laid end to end, cut to n
    np.testing.assert_array_equal(np.diff(paths[:, :3], axis=1), 1)
    np.testing.assert_array_equal(np.diff(paths[:, 3:6], axis=1), 1)
    assert block_bootstrap(np.arange(27.0), 4, np.random.default_rng(0)).shape == (4, 27)
    assert block_bootstrap(np.arange(2.0), 3, np.random.default_rng(0), length=5).shape == (3, 2)


# --------------------------------------------------------------------------- report

WINDOW = PhaseWindow(start_tokens=1e5, end_tokens=4e5, peak_tokens=2e5, peak_slope=-1.5, icl_before=3.0,
                     icl_after=2.0, drop=0.9, total_drop=1.1, share=0.9 / 1.1, width_decades=0.6, z=7.0,
                     step_z=9.0, end_level=2.05, lowest_before=2.9, n_inside=4, open_end=True,
                     noise_white=0.07, noise_walk=0.03, bandwidth=0.06, break_start_tokens=1.2e5,
                     break_end_tokens=3.5e5)
BUMP = LossBump(start_tokens=1.5e5, end_tokens=5e5, peak_tokens=3e5, height=0.08, tolerance=0.02)
LAG = Lag(lag_log10=0.2, ratio=10 ** 0.2, head_tokens=3e5, icl_tokens=2e5, resolution_log10=0.05,
          low=0.1, high=0.3, n_boot=100, block=3)


# kills to_flat_dict_21.._82 (values kept when present), _98, _106, _115, _118, _122
def test_flat_dict__hand_made_report():
    report = PhaseReport(WINDOW, BUMP, [(1, 0), (0, 2)], {(1, 0): 3e5, (0, 2): None}, {(1, 0): LAG, (0, 2): None})
    flat = report.to_flat_dict()
    expected = {
        "phase/has_window": 1.0, "phase/window_start_tokens": 1e5, "phase/window_end_tokens": 4e5,
        "phase/window_peak_tokens": 2e5, "phase/window_peak_slope": -1.5, "phase/window_width_log10": 0.6,
        "phase/window_drop": 0.9, "phase/window_total_drop": 1.1, "phase/window_share": 0.9 / 1.1,
        "phase/window_z": 7.0, "phase/window_step_z": 9.0, "phase/window_open_end": 1.0,
        "phase/window_noise_white": 0.07, "phase/window_noise_walk": 0.03, "phase/window_bandwidth": 0.06,
        "phase/window_break_start_tokens": 1.2e5, "phase/window_break_end_tokens": 3.5e5, "phase/icl_before": 3.0,
        "phase/icl_after": 2.0, "phase/bump_start_tokens": 1.5e5, "phase/bump_end_tokens": 5e5,
        "phase/bump_peak_tokens": 3e5, "phase/bump_height": 0.08, "phase/induction_heads": "1.0,0.2",
        "phase/head_1.0_formation_tokens": 3e5, "phase/head_1.0_lag_log10": 0.2,
        "phase/head_1.0_lag_ratio": 10 ** 0.2, "phase/head_1.0_lag_low": 0.1, "phase/head_1.0_lag_high": 0.3,
        "phase/head_1.0_lag_resolution": 0.05, "phase/head_1.0_lag_resolved": 1.0,
        "phase/head_1.0_lag_block": 3.0, "phase/induction_rule": "null", "phase/head_labels": "",
    }
    for key, value in expected.items():
        assert flat[key] == value, key
    assert set(flat) == set(expected) | {f"phase/head_0.2_{s}" for s in (
        "formation_tokens", "lag_log10", "lag_ratio", "lag_low", "lag_high", "lag_resolution",
        "lag_resolved", "lag_block")}
    assert all(math.isnan(flat[f"phase/head_0.2_{s}"]) for s in (
        "formation_tokens", "lag_log10", "lag_ratio", "lag_low", "lag_high", "lag_resolution",
        "lag_resolved", "lag_block"))
    assert all(isinstance(v, float) for k, v in flat.items() if k not in TEXT_ATTRS)


TEXT_ATTRS = ("phase/induction_heads", "phase/induction_rule", "phase/head_labels")


def test_flat_dict__nan_when_missing():
    flat = PhaseReport(None, None, []).to_flat_dict()
    assert flat["phase/has_window"] == 0.0 and flat["phase/induction_heads"] == ""
    assert flat["phase/head_labels"] == "" and flat["phase/induction_rule"] == "null"
    assert len(flat) == 26
    assert all(math.isnan(v) for k, v in flat.items() if k not in ("phase/has_window", *TEXT_ATTRS))


def flat_run(c=12, layers=2, heads=3):
    tokens = np.r_[0.0, np.logspace(3, 6, c - 1)]
    icl = 3.0 + 0.0 * tokens
    prefix = np.full((c, layers, heads), 0.1)
    copying = np.full((c, layers, heads), 0.3)
    return tokens, icl, prefix, copying


# kills analyse_phase_22 (no checkpoints: no heads)
def test_analyse_phase__no_checkpoints_no_heads():
    tokens, icl, _, _ = flat_run()
    report = analyse_phase(tokens, icl, tokens, icl, np.zeros((0, 2, 3)), np.zeros((0, 2, 3)))
    assert report.induction_heads == [] and report.window is None


# kills analyse_phase_30 (thresholds passed), _32, _34, _35 (heads from the last checkpoint)
def test_analyse_phase__heads_from_the_last_checkpoint_and_thresholds():
    tokens, icl, prefix, copying = flat_run()
    prefix[-1, 1, 2] = 0.8  # an induction head at the end only
    prefix[-2, 0, 0] = 0.8  # ... not this one
    copying[:, 0, 1] = 0.5
    copying[-1, 0, 1] = -0.5  # anti-copying at the end
    copying[-2, 1, 2] = -0.5
    prefix[:, 0, 1] = 0.8
    report = analyse_phase(tokens, icl, tokens, icl, prefix, copying, n_boot=10)
    assert report.induction_heads == [(1, 2)]
    loose = analyse_phase(tokens, icl, tokens, icl, prefix, copying, n_boot=10,
                          rule=InductionRule(legacy_prefix=0.05, min_copying=-1.0))
    assert len(loose.induction_heads) == 6


# --------------------------------------------------------------------------- synthetic


# kills _x_6 (0 tokens count as 1), sigmoid_drop_4, _6 (10%-90% width), _22 (centre at -drop/2)
def test_sigmoid_drop__centre_and_width():
    centre, spread, drop = 5.0, 0.6, 0.8
    assert sigmoid_drop(np.array([1e5]), drop, centre, spread)[0] == pytest.approx(-drop / 2)
    lo, hi = 10 ** (centre - spread / 2), 10 ** (centre + spread / 2)
    values = sigmoid_drop(np.array([lo, hi]), drop, centre, spread)
    np.testing.assert_allclose(values, [-0.1 * drop, -0.9 * drop])
    assert sigmoid_drop(np.array([0.0]), drop, 0.0, spread)[0] == pytest.approx(-drop / 2)


# kills sigmoid_drop_9 (no overflow far from the centre), _18 (clipped at -50)
def test_sigmoid_drop__clipped_far_from_the_centre():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = sigmoid_drop(np.array([1.0, 1e12]), 1.0, 6.0, 0.01)
    assert values[0] == -1.0 / (1 + math.exp(50))
    assert values[1] == -1.0


# kills power_decline_1.._6
def test_power_decline__endpoints_and_shape():
    tokens = np.array([0.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(power_decline(tokens, 0.6, 2.0), [0, -0.6 / 16, -0.6 / 4, -0.6])
    np.testing.assert_allclose(power_decline(tokens, 0.6, 1.0), [0, -0.15, -0.3, -0.6])


# kills loss_like_decline_1.._25 (17, 22 via t_1 = 2)
def test_loss_like_decline__from_zero_to_minus_total():
    tokens = np.array([0.0, 1.0, 10.0, 100.0])
    values = loss_like_decline(tokens, 0.6)
    assert values[0] == 0.0 and values[1] == 0.0
    assert values[-1] == pytest.approx(-0.6)
    assert values[2] == pytest.approx(-0.6 * (1 - 10 ** -0.3) / (1 - 100 ** -0.3))
    assert loss_like_decline(tokens, 0.6, alpha=1.0)[2] == pytest.approx(-0.6 * 0.9 / 0.99)
    assert np.all(np.diff(loss_like_decline(DEFAULT_RUN_TOKENS, 0.6)) <= 0)
    # first positive checkpoint at 2 tokens: t / t_1, not t * t_1
    np.testing.assert_allclose(loss_like_decline(2 * tokens, 0.6), values)


# kills random_walk_1.._6
def test_random_walk__starts_at_zero_with_step_sd():
    walk = random_walk(np.random.default_rng(5), DEFAULT_RUN_TOKENS, 0.02)
    assert walk.shape == DEFAULT_RUN_TOKENS.shape and walk[0] == 0.0
    steps = 0.02 * np.random.default_rng(5).standard_normal(DEFAULT_RUN_TOKENS.size - 1)
    np.testing.assert_allclose(np.diff(walk), steps, atol=1e-15)
    long = random_walk(np.random.default_rng(6), np.zeros(20001), 0.5)
    assert np.diff(long).std() == pytest.approx(0.5, rel=0.03)


# kills ar1_1.._10
def test_ar1__is_the_noise_model_draw():
    series = ar1(np.random.default_rng(2), DEFAULT_RUN_TOKENS, 0.8, 0.05)
    np.testing.assert_array_equal(series, NoiseModel(0.05, 0.8).draw(np.random.default_rng(2), (), 76))
    many = np.array([ar1(np.random.default_rng(s), np.zeros(3), 0.5, 0.2) for s in range(8000)])
    assert many.std(0) == pytest.approx(0.2, rel=0.05)
    assert np.corrcoef(many[:, 0], many[:, 1])[0, 1] == pytest.approx(0.5, abs=0.05)


def test_nulls__keys_and_reproducible():
    assert len(NULLS) == 10
    for kind in NULLS:
        a, b = null_series(kind, 7), null_series(kind, 7)
        assert a.shape == DEFAULT_RUN_TOKENS.shape
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, null_series(kind, 8))
    white = null_series("white noise", 3)
    expected = NOISE_SD * np.random.default_rng([3, sorted(NULLS).index("white noise")]).standard_normal(76)
    np.testing.assert_array_equal(white, expected)


# kills drop_series_2, _4, _5, _7, _8 (5, 8 via drop = spread = 1.2; seeded by seed, drop and spread), _12.._22 (centre range), _33, _47
def test_drop_series__seeded_centre_in_range_and_noise():
    drop, spread, seed = 0.5, 0.4, 11
    series, centre = drop_series(drop, spread, seed, noise_sd=0.01)
    series2, centre2 = drop_series(drop, spread, seed, noise_sd=0.01)
    np.testing.assert_array_equal(series, series2)
    assert centre == centre2
    rng = np.random.default_rng([seed, 500, 400])
    low = math.log10(4e5) + spread / 2
    high = math.log10(8192000) - 0.15 - spread / 2
    assert centre == pytest.approx(rng.uniform(low, high), rel=1e-13, abs=0)
    expected = sigmoid_drop(DEFAULT_RUN_TOKENS, drop, centre, spread) + 0.01 * rng.standard_normal(76)
    np.testing.assert_allclose(series, expected, rtol=0, atol=1e-14)
    # larger drop and spread: the seed is [seed, int(1000 drop), int(1000 spread)]
    series, centre = drop_series(1.2, 1.2, seed, noise_sd=0.01)
    rng = np.random.default_rng([seed, int(1000 * 1.2), int(1000 * 1.2)])
    assert centre == rng.uniform(math.log10(4e5) + 0.6, math.log10(4e5) + 0.6)  # no room: the low end
    expected = sigmoid_drop(DEFAULT_RUN_TOKENS, 1.2, centre, 1.2) + 0.01 * rng.standard_normal(76)
    np.testing.assert_allclose(series, expected, rtol=0, atol=1e-14)
    centres = [drop_series(drop, spread, s)[1] for s in range(300)]
    assert low <= min(centres) and max(centres) <= high
    assert min(centres) < low + 0.05 and max(centres) > high - 0.05


def run_with_phase():
    """Like tests/test_phase.py's synthetic run: an ICL drop at 3e6 tokens, heads 1.0 and 1.2 form."""
    tokens = np.unique(np.round(np.r_[np.geomspace(4e4, 8e6, 30), np.linspace(4e4, 8e6, 40)]))
    x = np.log10(tokens)

    def sig(centre):
        return 1 / (1 + np.exp(-np.clip((x - math.log10(centre)) / 0.025, -50, 50)))

    icl = np.r_[0.0, -0.4 * sig(3e6) + 0.02 * np.random.default_rng(0).standard_normal(x.size)]
    prefix = np.full((x.size + 1, 2, 3), 0.03)
    prefix[1:, 1, 0] = 0.03 + 0.7 * sig(3e6)
    prefix[1:, 1, 2] = 0.03 + 0.5 * sig(6e6)
    copying = np.full_like(prefix, 0.2)
    return np.r_[0.0, tokens], icl, prefix, copying


# kills analyse_phase_1 (n_boot default 1000), _2 (seed default 0), _56, _64 (seed passed on)
def test_analyse_phase__bootstrap_size_and_seed_reach_the_lag():
    from interp.phase.lag import formation_lag

    tokens, icl, prefix, copying = run_with_phase()
    loss_tokens = np.arange(1, 101) * 40960.0
    loss = 2.2 + 4.0 * (loss_tokens / 4e4) ** -0.35
    default = analyse_phase(tokens, icl, loss_tokens, loss, prefix, copying)
    assert default.window is not None and default.induction_heads == [(1, 0), (1, 2)]
    assert default.lags[(1, 0)].n_boot == 1000
    seeded = analyse_phase(tokens, icl, loss_tokens, loss, prefix, copying, n_boot=60, seed=5)
    assert seeded == analyse_phase(tokens, icl, loss_tokens, loss, prefix, copying, n_boot=60, seed=5)
    for head in seeded.induction_heads:
        direct = formation_lag(seeded.formation_tokens[head], seeded.window, tokens, icl, tokens,
                               prefix[:, head[0], head[1]], 60, 5)
        assert seeded.lags[head] == direct
    zero = analyse_phase(tokens, icl, loss_tokens, loss, prefix, copying, n_boot=60, seed=0)
    for head in zero.induction_heads:
        direct = formation_lag(zero.formation_tokens[head], zero.window, tokens, icl, tokens,
                               prefix[:, head[0], head[1]], 60, 0)
        assert zero.lags[head] == direct
    assert default.lags == analyse_phase(tokens, icl, loss_tokens, loss, prefix, copying, n_boot=1000, seed=0).lags
    assert any(seeded.lags[h].low != formation_lag(seeded.formation_tokens[h], seeded.window, tokens, icl,
                                                   tokens, prefix[:, h[0], h[1]], 60, 1).low
               for h in seeded.induction_heads)


# guards float32 inputs (analyse_phase_17, _19 survive: formation_time/formation_lag convert to float64 themselves)
def test_analyse_phase__float32_scores_give_the_float64_answer():
    tokens, icl, prefix, copying = run_with_phase()
    loss_tokens = np.arange(1, 101) * 40960.0
    loss = 2.2 + 4.0 * (loss_tokens / 4e4) ** -0.35
    single = prefix.astype(np.float32)
    report = analyse_phase(tokens, icl, loss_tokens, loss, single, copying, n_boot=60)
    assert report.lags and all(lag is not None for lag in report.lags.values())
    assert report == analyse_phase(tokens, icl, loss_tokens, loss, single.astype(np.float64), copying, n_boot=60)
