"""Analytic checks of interp.phase.smoothing and interp.phase.window (mutation-testing gaps)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from unittest import mock

import interp.phase.window as window_module
from interp.phase.noise import IncrementNoise, increment_noise
from interp.phase.smoothing import local_linear, log_tokens_and, noise_sd, vertex
from interp.phase.window import (_candidates, _noise_checkpoints, _step_z, _window_at, failed_gates,
                                 nearest_miss, phase_change_window)

OPEN = {"min_drop": -np.inf, "min_z": -np.inf, "min_step_z": -np.inf, "min_share": -np.inf,
        "max_width_fraction": np.inf}  # every gate open: the steepest usable candidate


def reference_hat(x, bandwidth, min_neighbours):
    """Level and slope rows by explicit weighted least squares at each checkpoint (the docstring)."""
    n = x.size
    level, slope = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        d = x - x[i]
        h = max(bandwidth, np.sort(np.abs(d))[min(min_neighbours, n - 1)])
        w = np.exp(-0.5 * (d / h) ** 2)
        design = np.stack([np.ones(n), d], axis=1)
        rows = np.linalg.solve(design.T @ (w[:, None] * design), design.T * w)
        level[i], slope[i] = rows
    return level, slope


# --------------------------------------------------------------------------- smoothing

# kills smoothing local_linear 8, 9 (k from len(x) - 1 on short series)
@pytest.mark.parametrize("x, min_neighbours", [
    (np.array([0.0, 0.3, 1.0]), 2), (np.array([0.0, 0.1, 0.5, 0.6, 2.0]), 10),
    (np.array([0.0, 1.0]), 2), (np.array([0.0, 0.05, 0.4, 0.45, 1.1, 1.3, 2.0]), 2)])
def test_local_linear__matches_explicit_weighted_least_squares(x, min_neighbours):
    level, slope = local_linear(x, 1e-3, min_neighbours)
    ref_level, ref_slope = reference_hat(x, 1e-3, min_neighbours)
    np.testing.assert_allclose(level, ref_level, atol=1e-10)
    np.testing.assert_allclose(slope, ref_slope, atol=1e-8)


# kills local_linear mutants that bias the slope (quadratic: exact slope where the kernel is symmetric)
def test_local_linear__exact_slope_of_a_quadratic_at_interior_points():
    x = np.linspace(0, 1, 101)
    level, slope = local_linear(x, 0.03)
    y = 2.0 * x ** 2 - x + 0.5
    interior = slice(40, 61)
    np.testing.assert_allclose((slope @ y)[interior], (4 * x - 1)[interior], atol=1e-9)
    np.testing.assert_allclose(level @ (3 * x - 1), 3 * x - 1, atol=1e-9)


# kills noise_sd 4, 5, 6, 7, 11, 13 (dof = n - 2 tr L + sum L^2 = 4 - 4 + 1 = 1 for L = I/2)
def test_noise_sd__hand_computed_half_identity():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    # residuals y/2 -> RSS = 7.5; dof = 1
    assert noise_sd(0.5 * np.eye(4), y) == pytest.approx(math.sqrt(7.5))


# kills noise_sd 12, 14, 15 (dof = 0 when L = I: nan, not an error and not 0/0 with a warning)
def test_noise_sd__nan_without_residual_degrees_of_freedom():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(noise_sd(np.eye(3), np.array([1.0, 5.0, 2.0])))


# kills log_tokens_and 3, 5, 8, 10 (float64 out for float32 / int input)
def test_log_tokens_and__float64_output():
    x, s = log_tokens_and(np.array([100, 10, 1000], dtype=np.float32), np.array([3, 1, 2]))
    assert x.dtype == np.float64 and s.dtype == np.float64
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s, [1.0, 3.0, 2.0])
    _, s32 = log_tokens_and(np.array([10.0, 100.0]), np.array([0.1, 0.2], dtype=np.float32))
    assert s32.dtype == np.float64


# kills log_tokens_and 14, 16, 18, 20 (drops only zero tokens and the non-finite points, keeps 1 token)
def test_log_tokens_and__drops_zero_tokens_and_nan_points_and_sorts():
    tokens = np.array([100.0, 0.0, 1.0, 10.0, 1000.0])
    a = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    b = np.array([10.0, 20.0, 30.0, 40.0, np.inf])
    x, ra, rb = log_tokens_and(tokens, a, b)
    np.testing.assert_array_equal(x, [0.0, 2.0])
    np.testing.assert_array_equal(ra, [3.0, 1.0])
    np.testing.assert_array_equal(rb, [30.0, 10.0])
    x1, r1 = log_tokens_and(tokens, a)
    np.testing.assert_array_equal(x1, [0.0, 2.0, 3.0])
    np.testing.assert_array_equal(r1, [3.0, 1.0, 5.0])


# kills log_tokens_and 23, 25 (ties in tokens keep their input order)
def test_log_tokens_and__stable_for_repeated_tokens():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 6, 2000).astype(float)
    x, idx = log_tokens_and(tokens, np.arange(tokens.size))
    for value in np.unique(x):
        assert np.all(np.diff(idx[x == value]) > 0)


# kills vertex 6, 10, 12, 15, 16, 24, 27, 46 (vertex of a parabola on uneven spacing)
def test_vertex__parabola_vertex_on_uneven_spacing():
    x = np.array([-5.0, 0.0, 1.0, 3.0, 3.5])
    values = np.stack([(x - 1.7) ** 2, 2.0 - 3.0 * (x - 0.4) ** 2])
    np.testing.assert_allclose(vertex(x, values, np.array([2, 2])), [1.7, 0.4], atol=1e-12)
    np.testing.assert_allclose(vertex(x, values[:1], np.array([3])), [1.7], atol=1e-12)


# kills vertex 56, 57 (clamped to the bracketing checkpoints)
def test_vertex__clamped_to_neighbours():
    x = np.array([0.0, 1.0, 3.0])
    values = np.stack([(x + 10.0) ** 2, (x - 10.0) ** 2])
    np.testing.assert_array_equal(vertex(x, values, np.array([1, 1])), [0.0, 3.0])


# kills vertex 34, 35, 36, 37 (flat or straight triples: x1, silently)
def test_vertex__degenerate_triples_give_the_middle_without_warnings():
    x = np.array([0.0, 1.0, 3.0])
    values = np.stack([2 * x + 1, np.full(3, 4.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(vertex(x, values, np.array([1, 1])), [1.0, 1.0])


# --------------------------------------------------------------------------- window

TOKENS = np.unique(np.round(np.r_[np.geomspace(4e4, 8e6, 30), np.linspace(4e4, 8e6, 40)]))
X = np.log10(TOKENS)
NOISE = 0.01 * np.random.default_rng(0).standard_normal(X.size)


def sigmoid(centre: float, scale: float = 0.025) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip((X - math.log10(centre)) / scale, -50, 50)))


def index_of(tokens: float) -> int:
    return int(np.argmin(np.abs(TOKENS - tokens)))


def check_fields(window, y, bandwidth=0.03):
    """Every field of a window against its definition (docstrings of PhaseWindow and _window_at)."""
    n = X.size
    level_map, slope_map = local_linear(X, bandwidth)
    level, slope = level_map @ y, slope_map @ y
    s, e = index_of(window.start_tokens), index_of(window.end_tokens)
    assert window.start_tokens == pytest.approx(TOKENS[s]) and window.end_tokens == pytest.approx(TOKENS[e])
    model = increment_noise(y, _noise_checkpoints(n, s, e))
    first, last = min(5, s + 1), min(5, n - e)
    assert window.icl_before == pytest.approx(y[:s + 1].mean(), abs=1e-12)
    assert window.icl_after == pytest.approx(y[e:].mean(), abs=1e-12)
    assert window.drop == pytest.approx(level[s] - level[e], abs=1e-12)
    assert window.total_drop == pytest.approx(y[:first].mean() - y[-last:].mean(), abs=1e-12)
    assert window.share == pytest.approx(window.drop / window.total_drop)
    assert window.width_decades == pytest.approx(X[e] - X[s])
    assert window.z == pytest.approx(window.drop / model.sd_of(level_map[s] - level_map[e]))
    assert window.step_z == pytest.approx(_step_z(10 ** X, y, 10 ** X[s], 10 ** X[e], model))
    assert window.end_level == pytest.approx(level[e], abs=1e-12)
    assert window.lowest_before == pytest.approx(level[:s + 1].min(), abs=1e-12)
    assert window.n_inside == e - s - 1
    assert window.open_end == (e == n - 1)
    assert window.noise_white == pytest.approx(model.white) and window.noise_walk == pytest.approx(model.walk)
    assert window.bandwidth == bandwidth
    assert window.peak_slope == pytest.approx(slope.min()) or window.peak_slope < 0
    return s, e, level, slope


# kills window_at 113, 114, 125, 126, 169, 170, 171, 172, 93, 62 (fields of a clean drop by definition)
def test_window__fields_match_their_definitions():
    y = -0.4 * sigmoid(3e6) + NOISE
    window = phase_change_window(TOKENS, y)
    assert window is not None and not window.open_end
    s, e, level, slope = check_fields(window, y)
    assert level[s + 1] < level[:s + 1].min()  # lowest_before must stop at the start
    assert window.peak_slope == pytest.approx(slope.min())


# kills window_at 54, phase_change_window 54 (open end: last = 1 checkpoint, peak at the last one)
def test_window__open_end_fields():
    y = -0.5 * sigmoid(8e6, 0.03) + NOISE
    window = phase_change_window(TOKENS, y, **OPEN)
    assert window is not None and window.open_end
    s, e, level, slope = check_fields(window, y)
    assert e == X.size - 1
    assert window.peak_slope == pytest.approx(slope[-1]) and slope[-1] == slope.min()
    assert window.peak_tokens == pytest.approx(TOKENS[-1])
    assert window.total_drop == pytest.approx(y[:5].mean() - y[-1])


# kills window_at 48, 49 (a window starting at the third checkpoint: first = start + 1 = 3 < 5)
def test_window__early_start_uses_fewer_first_checkpoints():
    x = np.linspace(0.0, 1.0, 30)
    y = np.where(np.arange(30) >= 4, -1.0, 0.0) + 0.001 * np.random.default_rng(1).standard_normal(30)
    level_map, slope_map = local_linear(x, 0.03)
    level, slope = level_map @ y, slope_map @ y
    peak = int(np.argmin(slope))
    window = _window_at(x, y, level_map, level, slope, peak, 0.3)
    assert window is not None
    s = int(np.argmin(np.abs(10 ** x - window.start_tokens)))
    assert s + 1 < 5
    assert window.total_drop == pytest.approx(y[:s + 1].mean() - y[-5:].mean())
    assert window.icl_before == pytest.approx(y[:s + 1].mean())


def stretch(slope, peak, fraction=0.5, y=None, noise=IncrementNoise(0.1, 0.0)):
    """_window_at on a hand-made slope profile, with the noise fixed: (start index, end index, window)."""
    n = slope.size
    x = np.arange(n) * 0.1
    y = np.linspace(0, -1, n) if y is None else y
    with mock.patch.object(window_module, "increment_noise", lambda series, keep: noise):
        window = _window_at(x, y, np.eye(n), y, np.asarray(slope, float), peak, fraction)
    if window is None:
        return None
    return (int(round(math.log10(window.start_tokens) * 10)),
            int(round(math.log10(window.end_tokens) * 10)), window)


# kills window_at 2, 9, 12 (steep = slope <= fraction * peak slope, grown one checkpoint at a time)
def test_window_at__stretch_and_widening_by_hand():
    slope = np.array([0, -1, -2, -4, -2, -1, 0, 0, 0, 0], float)
    start, end, window = stretch(slope, 3)
    assert (start, end) == (1, 5)
    assert window.n_inside == 3 and not window.open_end
    assert window.peak_slope == -4.0


# kills window_at 6, 7 (a stretch reaching the first checkpoint gives None, even when the last is steep)
def test_window_at__stretch_reaching_the_first_checkpoint_is_none():
    assert stretch(np.array([-2, -3, -4, -1, 0, 0, 0, 0], float), 2) is None
    assert stretch(np.array([-2, -3, -4, -1, 0, 0, 0, -3], float), 2) is None


# kills window_at 77 (peak one before the last: refined by the parabola)
def test_window_at__peak_before_last_is_refined():
    slope = np.array([0, 0, 0, 0, -1, -4, -3], float)
    start, end, window = stretch(slope, 5)
    x = np.arange(7) * 0.1
    assert end == 6 and window.open_end
    expected = vertex(x, slope[None], np.array([5]))[0]
    assert expected != pytest.approx(x[5])
    assert window.peak_tokens == pytest.approx(10 ** expected)


# kills window_at 131, 134 (share is nan unless the first-to-last change is a fall)
def test_window_at__share_nan_without_total_drop():
    slope = np.array([0, 0, -1, -4, -1, 0, 0, 0, 0, 0], float)
    # start 1, end 5: total_drop = mean(y[:2]) - mean(y[5:]) = 0 - 0, drop = level[1] - level[5] = 1
    flat_ends = np.array([0, 0, 0, 0, -1, -1, 0.5, 0.5, 0, 0], float)
    window = stretch(slope, 3, y=flat_ends)[2]
    assert window.total_drop == 0.0 and window.drop == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(window.share)
    rising = np.linspace(0, 1, 10)
    assert math.isnan(stretch(slope, 3, y=rising)[2].share)


# kills window_at 142, 145, 147, 148 (no noise: z is +inf whatever the drop's sign)
def test_window_at__z_infinite_without_noise():
    slope = np.array([0, 0, -1, -4, -1, 0, 0, 0, 0, 0], float)
    rising = np.linspace(0, 1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        window = stretch(slope, 3, y=rising, noise=IncrementNoise(0.0, 0.0))[2]
    assert window.drop < 0 and window.z == math.inf
    assert window.step_z == 0.0


# kills noise_checkpoints mutants (hand-counted index sets: all but the window and 2 on each side)
@pytest.mark.parametrize("n, start, end, left_out", [
    (100, 40, 50, range(38, 53)), (60, 40, 57, range(38, 60)), (100, 3, 5, range(1, 8)),
    (100, 1, 3, range(0, 6)), (10, 0, 9, range(0, 10))])
def test_noise_checkpoints__by_hand(n, start, end, left_out):
    expected = np.ones(n, bool)
    expected[list(left_out)] = False
    np.testing.assert_array_equal(_noise_checkpoints(n, start, end), expected)


# kills step_z 1, 5, 6, 9 (only checkpoints within two widths, boundaries included, count)
def test_step_z__uses_checkpoints_within_two_widths_inclusive():
    tokens = np.arange(0.0, 31.0)
    y = np.where(tokens >= 12, -1.0, 0.0) + 0.01 * np.sin(tokens)
    model = IncrementNoise(0.05, 0.0)
    z = _step_z(tokens, y, 10.0, 12.0, model)  # near: 6..16
    far = y.copy()
    far[[0, 5, 17, 30]] += 5.0  # outside 2 widths
    assert _step_z(tokens, far, 10.0, 12.0, model) == pytest.approx(z)
    for edge in (6, 16):
        moved = y.copy()
        moved[edge] += 1.0
        assert _step_z(tokens, moved, 10.0, 12.0, model) != pytest.approx(z)
    assert z > 10



# kills step_z mutants of the degenerate cases (0 below five checkpoints, without noise, and at
# 0 tokens, whose log is undefined; five checkpoints are enough)
def test_step_z__degenerate_and_minimal_cases():
    model = IncrementNoise(0.05, 0.0)
    four = np.array([1.0, 2.0, 3.0, 4.0])
    assert _step_z(four, np.array([0.0, 0.0, -1.0, -1.0]), 2.0, 3.0, model) == 0.0
    five = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y5 = np.array([0.0, 0.0, -1.0, -1.0, -1.0])
    assert _step_z(five, y5, 2.0, 3.0, model) > 1.0
    assert _step_z(five, y5, 2.0, 3.0, IncrementNoise(0.0, 0.0)) == 0.0
    with_zero = np.r_[0.0, five]
    assert _step_z(with_zero, np.r_[5.0, y5], 2.0, 3.0, model) == pytest.approx(_step_z(five, y5, 2.0, 3.0, model))


# kills step_z mutants that bias c (a line in tokens is no step; a step is)
def test_step_z__zero_for_a_line_large_for_a_step():
    """A line in tokens and a line in log tokens are smooth declines (z ~ 0); a step is not.
    Without the log term, the log-linear decline (a learning curve) scores as a step."""
    tokens = np.linspace(1e5, 1e6, 40)
    model = IncrementNoise(0.01, 0.003)
    assert abs(_step_z(tokens, 2.0 - 1e-6 * tokens, 4e5, 5e5, model)) < 1e-6
    assert abs(_step_z(tokens, 2.0 - 0.3 * np.log(tokens), 4e5, 5e5, model)) < 1e-6
    assert _step_z(tokens, np.where(tokens > 4.5e5, -0.5, 0.0), 4e5, 5e5, model) > 10


# kills phase_change_window 10, 11 (five and six checkpoints are enough to look)
@pytest.mark.parametrize("n", [5, 6])
def test_phase_change_window__five_or_six_checkpoints(n):
    tokens = 10 ** np.linspace(5, 6, n)
    y = np.where(np.arange(n) >= 4, -1.0, 0.0) + 0.01 * np.random.default_rng(0).standard_normal(n)
    window = phase_change_window(tokens, y, **OPEN)
    assert window is not None and window.end_tokens > window.start_tokens


def clean_drop():
    y = -0.4 * sigmoid(3e6) + NOISE
    return y, phase_change_window(TOKENS, y, scales=(1,))


# kills phase_change_window 88, 90, 92, 93 (each gate passes at exactly its threshold)
def test_gates__pass_at_their_thresholds():
    y, window = clean_drop()
    assert window.drop < window.total_drop
    for gate, value in [("min_drop", window.drop), ("min_z", window.z),
                        ("min_step_z", window.step_z), ("min_share", window.share)]:
        assert phase_change_window(TOKENS, y, scales=(1,), **{gate: value}) == window, gate
        assert phase_change_window(TOKENS, y, scales=(1,), **{gate: np.nextafter(value, np.inf)}) is None, gate


# kills phase_change_window 89 (total_drop gate at its threshold, on a drop larger than the total)
def test_gates__total_drop_at_threshold():
    y = -0.5 * sigmoid(1e6) + 0.3 * sigmoid(5e6) + NOISE  # a partial recovery after the drop
    window = phase_change_window(TOKENS, y, scales=(1,))
    assert window is not None and window.drop > window.total_drop
    assert phase_change_window(TOKENS, y, scales=(1,), min_drop=window.total_drop) == window
    assert phase_change_window(TOKENS, y, scales=(1,), min_drop=np.nextafter(window.total_drop, np.inf)) is None


# kills phase_change_window 94, 96, 98, 99 (width gate: fraction of x[-1] - x[0], inclusive)
def test_gates__width_fraction_of_the_whole_span():
    y, window = clean_drop()
    span = X[-1] - X[0]
    fraction = window.width_decades / span
    for _ in range(8):  # the fraction whose product with the span is the width exactly
        if fraction * span == window.width_decades:
            break
        fraction = np.nextafter(fraction, np.inf if fraction * span < window.width_decades else -np.inf)
    assert fraction * span == window.width_decades
    assert phase_change_window(TOKENS, y, scales=(1,), max_width_fraction=fraction) == window
    assert phase_change_window(TOKENS, y, scales=(1,), max_width_fraction=np.nextafter(fraction, 0)) is None


# kills phase_change_window 4 (the default width gate is 0.25 of the span)
def test_gates__default_width_refuses_a_wide_drop():
    y = -0.6 * sigmoid(1e6, 0.25) + NOISE
    wide = phase_change_window(TOKENS, y, max_width_fraction=1.25)
    assert wide is not None and 0.35 < wide.width_decades / (X[-1] - X[0]) < 1.25
    assert phase_change_window(TOKENS, y) is None
    assert phase_change_window(TOKENS, y, max_width_fraction=0.35) is None


# kills phase_change_window 16 (the bandwidth reaches the smoother)
def test_phase_change_window__uses_its_bandwidth():
    y = -0.4 * sigmoid(3e6) + NOISE
    for bandwidth in (0.02, 0.08):
        window = phase_change_window(TOKENS, y, bandwidth=bandwidth, **OPEN)
        slope = local_linear(X, bandwidth)[1] @ y
        assert window.peak_slope == pytest.approx(slope.min())
        check_fields(window, y, bandwidth)


# kills phase_change_window 80 (a steeper candidate reaching the first checkpoint is skipped, not final)
def test_phase_change_window__skips_a_drop_at_the_first_checkpoint():
    y = -1.5 * sigmoid(4.3e4, 0.02) - 0.4 * sigmoid(3e6) + NOISE
    slope = local_linear(X)[1] @ y
    assert np.argmin(slope) < 3  # the steepest candidate is at the start of the run
    window = phase_change_window(TOKENS, y, scales=(1,), **OPEN)
    assert window is not None and 2e6 < window.peak_tokens < 4e6


# kills phase_change_window 32, 33, 35, 42, 46 (only falling slopes are candidates)
@pytest.mark.parametrize("phase", [0.0, 3.0])
def test_phase_change_window__rising_series_has_no_candidate(phase):
    y = 0.5 * X + 0.02 * np.sin(2 * np.pi * X / 0.5 + phase)
    slope = local_linear(X)[1] @ y
    assert 0 < slope.min() and slope.max() < 1
    assert phase_change_window(TOKENS, y, **OPEN) is None


# kills phase_change_window mutants of the scale loop (finest first; coarser scales reached)
def test_scales__finest_passing_scale_wins_and_coarser_ones_find_wide_drops():
    sharp = -0.4 * sigmoid(3e6) + NOISE
    assert phase_change_window(TOKENS, sharp).bandwidth == pytest.approx(0.03)
    assert phase_change_window(TOKENS, sharp, scales=(4, 1)).bandwidth == pytest.approx(0.12)
    found = []
    for seed in range(20):
        wide = -0.25 * sigmoid(2.5e6, 0.2) + 0.02 * np.random.default_rng(seed).standard_normal(X.size)
        fine = phase_change_window(TOKENS, wide, scales=(1,))
        every = phase_change_window(TOKENS, wide)
        found.append((fine is not None, every is not None, every.bandwidth if every else None))
    assert sum(f[1] for f in found) > sum(f[0] for f in found)  # some only at a coarser scale
    assert any(f[2] is not None and f[2] > 0.03 for f in found)
    assert all(f[1] for f in found if f[0])  # a window at the finest scale is never lost


def reference_candidates(slope):
    """The docstring of _candidates, as a loop."""
    n = len(slope)
    found = [i for i in range(1, n - 1) if slope[i] < 0 and slope[i] <= slope[i - 1] and slope[i] <= slope[i + 1]]
    if slope[-1] < 0 and slope[-1] <= slope[-2]:
        found.append(n - 1)
    return sorted(found, key=lambda i: (slope[i], i))


# kills _candidates mutants: bounds of the interior, strict/non-strict comparisons, the last
# checkpoint's rule, the order (steepest first, ties by position: a stable sort)
def test_candidates__match_their_definition_on_integer_profiles_with_ties():
    rng = np.random.default_rng(0)
    for n in (3, 4, 7, 40, 300):
        for _ in range(200 if n < 300 else 20):
            slope = rng.integers(-3, 3, size=n).astype(float)
            assert _candidates(slope).tolist() == reference_candidates(slope), slope


@pytest.mark.parametrize("slope, expected", [
    ([-2.0, -1.0, 0.0, -1.0], [3]),           # the first checkpoint is never a candidate
    ([0.0, -2.0, -1.0, 0.0], [1]),            # ... the second can be
    ([1.0, 0.0, 1.0, 1.0], []),               # a flat minimum at 0 is not below 0
    ([2.0, 0.5, 2.0, 2.0], []),               # nor one above 0
    ([0.0, -1.0, -1.0, 0.0], [1, 2]),         # a tie: both, earlier first
    ([-5.0, 0.0, -1.0, 0.0], [2]),            # compared with its own neighbours only
    ([0.0, 0.0, 2.0, 1.0], []),               # the last, falling less: not a candidate
    ([0.0, 0.0, 1.0, -1.0], [3]),             # the last below 0 and below the one before
    ([0.0, -3.0, -2.0, -1.0], [1]),           # the last below 0 but above the one before
    ([0.0, 0.0, -1.0, -1.0, -1.0], [2, 3, 4]),  # ties at the end, in order
    ([0.0, -4.0, -1.0, -2.0, -2.0], [1, 3, 4]),  # the last equal to the one before counts
])
def test_candidates__by_hand(slope, expected):
    assert _candidates(np.array(slope)).tolist() == expected


GATES = dict(min_drop=0.1, min_z=5.0, min_step_z=4.0, min_share=0.25, max_width=0.5)


def test_failed_gates__each_gate_named_with_its_figure_and_threshold():
    # Catches a gate left out of the list, a swapped comparison or threshold, and NaN passing.
    from dataclasses import replace
    passing = phase_change_window(TOKENS, -0.4 * sigmoid(3e6) + NOISE)
    assert passing is not None and failed_gates(passing, **GATES) == []
    cases = {"drop 0.050": dict(drop=0.05), "(run 0.050)": dict(total_drop=0.05), "z 4.9 < 5": dict(z=4.9),
             "ends no lower": dict(end_level=passing.lowest_before), "step z 3.9 < 4": dict(step_z=3.9),
             "share 0.24 < 0.25": dict(share=0.24), "width 0.60 > 0.50": dict(width_decades=0.6),
             "share nan": dict(share=float("nan"))}
    for phrase, change in cases.items():
        failed = failed_gates(replace(passing, **change), **GATES)
        assert len(failed) == 1 and phrase in failed[0], (phrase, failed)


def test_nearest_miss__the_window_itself_when_one_passes_and_its_failed_gate_when_not():
    # The evidence behind "no window" is the same candidate the rule tested: catches a miss
    # chosen by steepness alone (here the step gate is what fails) or from another series.
    y = -0.4 * sigmoid(3e6) + NOISE
    window = phase_change_window(TOKENS, y)
    found, failed = nearest_miss(TOKENS, y)
    assert failed == [] and found == window
    assert phase_change_window(TOKENS, y, min_step_z=1e3) is None
    missed, failed = nearest_miss(TOKENS, y, min_step_z=1e3)
    assert missed == window and len(failed) == 1 and failed[0].startswith("step z")


@pytest.mark.parametrize("seed", range(6))
def test_nearest_miss__fails_a_gate_exactly_when_the_rule_finds_no_window(seed):
    from interp.phase.synthetic import DEFAULT_RUN_TOKENS, drop_series, null_series
    for y in (null_series("white noise", seed), null_series("random walk (steps sd/4) + white", seed), drop_series(0.2, 0.5, seed)[0]):
        miss = nearest_miss(DEFAULT_RUN_TOKENS, y)
        found = phase_change_window(DEFAULT_RUN_TOKENS, y)
        assert (found is None) == (miss is None or miss[1] != [])


def test_nearest_miss__none_when_the_score_never_falls():
    assert nearest_miss(TOKENS, np.linspace(0.0, 0.3, TOKENS.size)) is None


def test_nearest_miss__none_below_five_usable_checkpoints():
    # Catches the shared five-checkpoint floor moved (4 vs 5 usable points: zero tokens do not count).
    tokens = np.r_[0.0, np.geomspace(1e5, 1e7, 5)]
    y = np.array([0.0, 0.3, 0.3, 0.3, 0.0, -0.3])  # falling at the end: a candidate on 5 points
    assert nearest_miss(tokens, y) is not None
    assert nearest_miss(tokens[1:], y[1:]) is not None and nearest_miss(tokens[2:], y[2:]) is None
