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
