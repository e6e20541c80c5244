"""interp.phase.edges: the broken-stick fit that places a window's edges, against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from interp.phase.edges import MIN_FLANK, SUBDIVISIONS, _neighbourhood, broken_stick, refine_edges

X = np.linspace(6.0, 7.0, 41)  # log10 tokens, 0.025 decades apart


def stick(x0: float, x1: float, before: float = 0.1, inside: float = -3.0, after: float = -0.2,
          x: np.ndarray = X) -> np.ndarray:
    """The model itself: continuous, slopes ``before``/``inside``/``after``, 0 at x0."""
    return (before * np.minimum(x - x0, 0) + inside * np.clip(x - x0, 0, x1 - x0)
            + after * np.maximum(x - x1, 0))


@pytest.mark.parametrize("x0, x1", [(6.3, 6.55), (6.3125, 6.5625), (6.1, 6.9)])
def test_broken_stick__recovers_exact_breakpoints_and_slopes(x0, x1):
    """Breakpoints on the grid (checkpoints and quarter gaps) come back exactly, and so do the
    three slopes. Catches a column built from the wrong breakpoint or a design that is not
    continuous (the fit would not be exact)."""
    fit = broken_stick(X, 1.0 + stick(x0, x1), must_contain=(x0 + x1) / 2)
    assert fit is not None
    assert (fit.x0, fit.x1) == pytest.approx((x0, x1), abs=1e-9)
    assert (fit.slope_before, fit.slope_inside, fit.slope_after) == pytest.approx((0.1, -3.0, -0.2), abs=1e-6)


def test_broken_stick__grid_resolution_is_a_fraction_of_the_spacing():
    """Breakpoints between grid points land on the nearest ones (within a grid step)."""
    step = 0.025 / SUBDIVISIONS
    fit = broken_stick(X, stick(6.3031, 6.5517), must_contain=6.4)
    assert abs(fit.x0 - 6.3031) <= step and abs(fit.x1 - 6.5517) <= step


def test_broken_stick__the_ramp_must_contain_the_proposed_point():
    """Two drops: the fit takes the one around ``must_contain`` even when the other is larger.
    Negative control: with the point at the larger drop, the fit moves there."""
    y = stick(6.2, 6.3, inside=-3.0, after=0.0) + stick(6.7, 6.8, inside=-5.0, after=0.0)
    small = broken_stick(X, y, must_contain=6.25)
    large = broken_stick(X, y, must_contain=6.75)
    assert small.x0 <= 6.25 <= small.x1 and small.x1 < 6.7
    assert large.x0 <= 6.75 <= large.x1 and large.x0 > 6.3


def test_broken_stick__only_falls_steeper_than_both_flanks_qualify():
    """A rise, or a series whose steepest part is a flank, has no qualifying fit."""
    assert broken_stick(X, -stick(6.3, 6.6), must_contain=6.45) is None  # a rise
    assert broken_stick(X, -0.5 * X, must_contain=6.45) is None  # a straight line
    assert broken_stick(X[:4], stick(6.03, 6.05, x=X[:4]), must_contain=6.04) is None  # too short


def test_broken_stick__flanks_keep_two_checkpoints_unless_the_run_ends():
    """A drop still under way at the last checkpoint: the end breakpoint is the last checkpoint
    only with ``may_end``; without it the fit stops two checkpoints short."""
    y = stick(6.8, 7.2)  # the ramp runs past the data
    open_fit = broken_stick(X, y, must_contain=6.9, may_end=True)
    closed_fit = broken_stick(X, y, must_contain=6.9)
    assert open_fit.x1 == X[-1] and open_fit.x0 == pytest.approx(6.8)
    assert closed_fit is None or closed_fit.x1 <= X[-3]
    assert broken_stick(X, stick(6.02, 6.3), must_contain=6.1).x0 >= X[2]


def test_refine_edges__brackets_the_breakpoints_from_a_bad_start():
    """From a window far too wide (what a coarse smoother gives), the edges move to the
    checkpoints around the breakpoints. Catches a bracket taken inside the ramp."""
    y = stick(6.4125, 6.5875, after=-0.3) + 0.002 * np.random.default_rng(0).standard_normal(X.size)
    start, end, fit = refine_edges(X, y, start=8, end=32, peak_x=6.5)
    assert X[start] <= fit.x0 < X[start + 1] and X[end - 1] < fit.x1 <= X[end]
    assert (X[start], X[end]) == pytest.approx((6.4, 6.6))


def test_refine_edges__a_logistic_is_bracketed_near_its_12_and_88_percent_points():
    """A logistic of scale w in x: the tangent at the centre meets the plateaus at centre -+ 2w."""
    centre, w = 6.5, 0.04
    y = -0.3 / (1 + np.exp(-(X - centre) / w))
    start, end, fit = refine_edges(X, y, start=5, end=35, peak_x=centre)
    assert fit.x0 == pytest.approx(centre - 2 * w, abs=0.03) and fit.x1 == pytest.approx(centre + 2 * w, abs=0.03)


def test_refine_edges__no_fit_leaves_the_window_as_it_came():
    assert refine_edges(X, 0.0 * X, 10, 20, 6.4) == (10, 20, None)


def test_neighbourhood__reach_and_minimum_flank():
    """One width on each side, and at least MIN_FLANK checkpoints where the run has them."""
    assert _neighbourhood(X, 16, 24) == (8, 32)  # width 8 checkpoints
    assert _neighbourhood(X, 20, 21) == (20 - MIN_FLANK, 21 + MIN_FLANK)
    assert _neighbourhood(X, 1, 39) == (0, 40)


# Found by mutation testing (docs/MUTATION.md, interp/phase/edges.py).

def _uneven_checkpoints(rng: np.random.Generator, n: int) -> np.ndarray:
    """n checkpoints in log10 tokens, gaps 0.021-0.039 decades (a run's spacing is not exact)."""
    return 6.0 + np.cumsum(rng.uniform(0.7, 1.3, n)) * 0.03


def test_broken_stick__noiseless_knots_are_found_within_a_quarter_spacing_on_uneven_checkpoints():
    """Analytic ground truth: a noiseless three-segment series with knots anywhere between
    checkpoints (at least 4 gaps apart, 3 checkpoints on each flank) gives breakpoints within a
    quarter of the local checkpoint spacing (one grid step) of the true knots, on uneven spacing,
    with the ramp steeper than both flanks. Catches a grid that is not every checkpoint plus
    quarter points of the gap it is in (e.g. steps scaled by the wrong gap, or a grid shifted
    by one gap), and a fit that is not least squares."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(16, 40))
        x = _uneven_checkpoints(rng, n)
        j0 = int(rng.integers(3, n - 8))
        j1 = int(rng.integers(j0 + 4, n - 3))
        k0, k1 = rng.uniform(x[j0 - 1], x[j0]), rng.uniform(x[j1 - 1], x[j1])
        before, after = rng.uniform(-0.3, 0.3, 2)
        inside = min(before, after) - rng.uniform(0.5, 5.0)
        fit = broken_stick(x, 2.0 + stick(k0, k1, before, inside, after, x=x), must_contain=(k0 + k1) / 2)
        assert fit is not None
        assert abs(fit.x0 - k0) <= (x[j0] - x[j0 - 1]) / SUBDIVISIONS
        assert abs(fit.x1 - k1) <= (x[j1] - x[j1 - 1]) / SUBDIVISIONS
        assert fit.slope_inside < min(fit.slope_before, fit.slope_after, 0.0)


def _allowed_pairs(x: np.ndarray, must_contain: float, may_end: bool) -> list[tuple[float, float]]:
    """Every breakpoint pair the docstring allows, enumerated one by one."""
    grid = [x[i] + k * (x[i + 1] - x[i]) / SUBDIVISIONS for i in range(x.size - 1) for k in range(SUBDIVISIONS)]
    grid.append(x[-1])
    return [(a, b) for a in grid for b in grid
            if x[2] <= a <= must_contain <= b and a < b and (b <= x[-3] or (may_end and b == x[-1]))]


def _fit_at(x: np.ndarray, y: np.ndarray, a: float, b: float) -> tuple[float, np.ndarray]:
    """Residual sum of squares and (intercept, before, inside, after) of the fit with breaks a, b."""
    design = np.column_stack([np.ones_like(x), np.minimum(x - a, 0), np.clip(x - a, 0, b - a), np.maximum(x - b, 0)])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(((design @ coef - y) ** 2).sum()), coef


@pytest.mark.parametrize("may_end", [False, True])
def test_broken_stick__is_the_best_qualifying_pair_of_the_grid(may_end):
    """Against a slow reference (every allowed pair fitted by lstsq, one at a time): on noisy
    series the fit is an allowed pair, qualifies (ramp < 0 and below both flanks; after = 0
    slope counts as a flank), and no qualifying pair has a smaller residual. Catches a wrong
    residual (sign, power, summed over the wrong axis), a wrong qualification rule (or for and,
    a flank column swapped), and a grid or range that leaves pairs out or lets others in."""
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(25):
        n = int(rng.integers(8, 16))
        x = _uneven_checkpoints(rng, n) * 1.5
        drop = stick(rng.uniform(x[1], x[-2]), x[-1] + 0.1, 0.1, -2.0, 0.0, x=x) * rng.uniform(0.0, 1.0)
        y = drop + 0.05 * rng.standard_normal(n)
        must_contain = rng.uniform(x[3], x[-4])
        fit = broken_stick(x, y, must_contain, may_end=may_end)
        pairs = _allowed_pairs(x, must_contain, may_end)
        fits = [(_fit_at(x, y, a, b), a, b) for a, b in pairs]
        qualifying = [(rss, a, b) for (rss, c), a, b in fits if c[2] < min(0.0, c[1], c[3])]
        if not qualifying:
            assert fit is None
            continue
        checked += 1
        assert fit is not None and any(np.isclose(fit.x0, a) and np.isclose(fit.x1, b) for a, b in pairs)
        rss, coef = _fit_at(x, y, fit.x0, fit.x1)
        assert (fit.slope_before, fit.slope_inside, fit.slope_after) == pytest.approx(coef[1:], abs=1e-6)
        assert coef[2] < min(0.0, coef[1], coef[3])
        assert rss <= min(r for r, _, _ in qualifying) * (1 + 1e-9) + 1e-12
    assert checked >= 15


def test_broken_stick__breakpoints_at_the_edges_of_their_ranges():
    """The ranges are closed: x0 may be the third checkpoint, x1 the third from last (or the
    last, with ``may_end``), and either may be the proposed point itself. Catches < for <=
    in any of the four bounds and a range starting one checkpoint later."""
    assert broken_stick(X, stick(X[2], X[20]), must_contain=6.3).x0 == X[2]
    assert broken_stick(X, stick(X[20], X[-3]), must_contain=6.7).x1 == X[-3]
    assert broken_stick(X, stick(X[20], X[-1], after=0.0), must_contain=6.7, may_end=True).x1 == X[-1]
    at_start = broken_stick(X, stick(X[16], X[24]), must_contain=X[16])
    at_end = broken_stick(X, stick(X[16], X[24]), must_contain=X[24])
    assert (at_start.x0, at_start.x1) == (X[16], X[24]) == (at_end.x0, at_end.x1)


def test_broken_stick__the_ramp_falls_more_steeply_than_each_flank_beyond_rounding():
    """Where an exact fit would break the rule, the fit found keeps it by a clear margin:
    a flat stretch between two rises (exact with a ramp of 0), a single bend (exact with the
    ramp's slope equal to a flank's) and a steep straight line (every slope equal) give either
    no fit or one whose ramp is below 0 and below both flanks by more than rounding. Catches
    the rounding margin added instead of subtracted, or shrinking as the slope grows."""
    flat_between_rises = broken_stick(X, stick(6.3, 6.6, before=1.0, inside=0.0, after=1.0), must_contain=6.45)
    bend_after = broken_stick(X, np.where(X < 6.5, 6.5 - X, 0.0), must_contain=6.3)
    bend_before = broken_stick(X, np.where(X > 6.5, 6.5 - X, 0.0), must_contain=6.8)
    for fit in (flat_between_rises, bend_after, bend_before):
        assert fit is not None
        assert fit.slope_inside < min(0.0, fit.slope_before, fit.slope_after) - 1e-6
    assert broken_stick(X, -3.0 * X, must_contain=6.45) is None


def test_broken_stick__five_checkpoints_are_enough_for_a_drop_at_the_end():
    """With ``may_end``, five checkpoints allow exactly one pair (x0 = 3rd checkpoint, x1 =
    the last); it is found. Catches a minimum of six checkpoints and a refusal of a single
    candidate pair."""
    x = X[:5]
    fit = broken_stick(x, stick(x[2], x[4] + 0.05, after=0.0, x=x), must_contain=x[2], may_end=True)
    assert (fit.x0, fit.x1) == (x[2], x[4]) and fit.slope_inside == pytest.approx(-3.0)


def test_neighbourhood__a_checkpoint_exactly_one_width_away_counts():
    """On checkpoints that are exact binary fractions (0.5 decades apart) a checkpoint exactly
    one window width outside either edge is in the neighbourhood, for a window wider than a
    decade too. Near the run's ends MIN_FLANK is cut at the first and last checkpoint. Catches
    the rounding slack with the wrong sign (or negative for wide windows) and the ends clipped
    one checkpoint early."""
    x = np.arange(20) * 0.5
    assert _neighbourhood(x, 10, 14) == (6, 18)  # width 2 decades: 3.0 and 9.0 are checkpoints
    assert _neighbourhood(X, 2, 3) == (0, 6)
    assert _neighbourhood(X, 37, 38) == (34, 40)


def test_refine_edges__knots_on_checkpoints_are_their_own_bracket():
    """Breakpoints exactly at checkpoints 16 and 24: the window is (16, 24), not one checkpoint
    wider on either side. Catches the rounding guard (1e-12) applied the wrong way round."""
    start, end, fit = refine_edges(X, stick(X[16], X[24]), start=12, end=28, peak_x=6.5)
    assert (fit.x0, fit.x1) == (X[16], X[24])
    assert (start, end) == (16, 24)


def test_refine_edges__refits_until_the_bracket_stops_moving(monkeypatch):
    """From a window that covers only the start of the drop, the first fit's neighbourhood
    stops short of the drop's end; refitting on the new neighbourhood finds it. The result is
    a fixed point (refining it again changes nothing) and its fit is the fit on its own
    neighbourhood. Negative control: a single round stops short."""
    y = stick(6.4125, 6.5875, after=-0.3) + 0.002 * np.random.default_rng(0).standard_normal(X.size)
    start, end, fit = refine_edges(X, y, start=14, end=18, peak_x=6.5)
    assert (start, end) == (16, 24)
    assert refine_edges(X, y, start, end, 6.5) == (start, end, fit)
    lo, hi = _neighbourhood(X, start, end)
    assert broken_stick(X[lo:hi + 1], y[lo:hi + 1], 6.5) == fit
    monkeypatch.setattr("interp.phase.edges.MAX_ROUNDS", 1)
    assert refine_edges(X, y, start=14, end=18, peak_x=6.5)[:2] != (16, 24)


def test_refine_edges__a_drop_under_way_at_the_end_reaches_the_last_checkpoint():
    """A drop still falling when the run ends: the fit may end at the last checkpoint (there is
    no "after"), and the window ends there (the window search then keeps the smoother's stretch,
    open-ended). Control: the same drop in a run that goes on is bracketed at its true end.
    Catches ``may_end`` not passed on (the fit would stop two checkpoints short)."""
    start, end, fit = refine_edges(X, stick(6.8, 7.2), start=30, end=40, peak_x=6.9)
    assert end == X.size - 1 and fit.x1 == X[-1] and fit.x0 == pytest.approx(6.8)
    longer = np.r_[X, X[-1] + 0.025 * np.arange(1, 21)]
    start, end, fit = refine_edges(longer, stick(6.8, 7.2, x=longer), start=30, end=40, peak_x=6.9)
    assert (start, end) == (32, 48) and (fit.x0, fit.x1) == pytest.approx((6.8, 7.2))
