"""Where a drop starts and ends: a three-segment (broken-stick) fit to the raw scores near it.

The window search (:mod:`interp.phase.window`) finds a drop from the smoothed slope, but edges
read off a smoothed slope move with the smoother's bandwidth and with the checkpoint spacing:
a fine smoother on sparse checkpoints sees noise, a coarse one spreads the drop and takes in
the slow decline after it. A continuous piecewise-linear fit with two free breakpoints
(segmented regression, Muggeo 2003) uses the raw scores only, so its breakpoints do not
depend on a bandwidth and are consistent estimates however densely the run was sampled:

    y = a + b min(x - x0, 0) + r clip(x - x0, 0, x1 - x0) + c max(x - x1, 0)

(x = log10 tokens; slopes b before x0, r across [x0, x1], c after x1). The breakpoints
minimise the residual sum of squares over a grid (every checkpoint and ``SUBDIVISIONS`` - 1
points between neighbours), subject to the ramp falling faster than both flanks
(r < min(b, c), r < 0) and containing the drop's steepest point. On a logistic drop of scale
w in x the breakpoints land near its centre -+ 2w (the tangent at the centre meets the two
levels), where 12% and 88% of the drop are done.

Grid search rather than Muggeo's iterative estimator: the likelihood is not smooth in the
breakpoints (it has a kink at each checkpoint) and a run has tens of checkpoints near a drop,
so the exhaustive search is cheap (~10^4 least-squares fits of 4 coefficients, batched) and
finds the global optimum that the iteration can miss. No well-kept Python library offers
segmented regression with the constraints above (``piecewise-regression`` fits Muggeo's
iteration without them), so it is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

# Breakpoint candidates per gap between neighbouring checkpoints.
SUBDIVISIONS = 4
# The fit uses the checkpoints within REACH window widths of the current window on each side,
# and at least MIN_FLANK checkpoints on each side where the run has them.
REACH = 1.0
MIN_FLANK = 3
# Refit with the neighbourhood of the refined window until the bracketing checkpoints stop
# moving, at most this many times.
MAX_ROUNDS = 5

Series = Float[np.ndarray, "checkpoint"]


@dataclass(frozen=True)
class Breaks:
    """The fitted breakpoints (log10 tokens) and the slopes (nats per decade) around them."""

    x0: float
    x1: float
    slope_before: float
    slope_inside: float
    slope_after: float


def broken_stick(x: Series, y: Series, must_contain: float, may_end: bool = False) -> Breaks | None:
    """The best continuous three-segment fit of y on x (sorted), or None if none qualifies.

    Both breakpoints leave at least two checkpoints on their far side (so each flank's slope
    is estimated), except that with ``may_end`` (x is the end of the run) x1 may also be the
    last checkpoint: a drop still under way when the run ends has no "after" (c is then 0).
    ``must_contain``: an x the ramp [x0, x1] has to include (the steepest point that proposed
    the drop), so that the fit cannot wander to another feature of the neighbourhood.
    """
    if x.size < 5:
        return None
    steps = np.linspace(0, 1, SUBDIVISIONS, endpoint=False)
    grid = np.r_[(x[:-1, None] + steps * np.diff(x)[:, None]).ravel(), x[-1]]
    first = grid[(grid >= x[2]) & (grid <= must_contain)]
    second = grid[(grid >= must_contain) & ((grid <= x[-3]) | (may_end & (grid == x[-1])))]
    x0, x1 = (a.ravel() for a in np.meshgrid(first, second, indexing="ij"))
    x0, x1 = x0[x1 > x0], x1[x1 > x0]
    if x0.size == 0:
        return None
    design = _design(x, x0[:, None], x1[:, None])  # [pairs, checkpoints, 4]
    transposed = design.transpose(0, 2, 1)
    coef = np.linalg.solve(transposed @ design + 1e-12 * np.eye(4), transposed @ y[:, None])
    rss = ((design @ coef)[..., 0] - y) ** 2
    rss, coef = rss.sum(axis=1), coef[..., 0]
    ramp, margin = coef[:, 2], 1e-9 * (1 + np.abs(coef[:, 2]))  # rounding: a line is no drop
    ok = (ramp < -margin) & (ramp < coef[:, 1] - margin) & (ramp < coef[:, 3] - margin)  # c = 0 at the end
    if not ok.any():
        return None
    best = int(np.argmin(np.where(ok, rss, np.inf)))
    return Breaks(float(x0[best]), float(x1[best]), *(float(c) for c in coef[best, 1:]))


def _design(x: Series, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Columns 1, min(x - x0, 0), clip(x - x0, 0, x1 - x0), max(x - x1, 0) for each pair."""
    x = x[None, :]
    return np.stack([np.ones(np.broadcast_shapes(x.shape, x0.shape)), np.minimum(x - x0, 0),
                     np.clip(x - x0, 0, x1 - x0), np.maximum(x - x1, 0)], axis=-1)


def refine_edges(x: Series, y: Series, start: int, end: int, peak_x: float
                 ) -> tuple[int, int, Breaks | None]:
    """Checkpoints (start, end) that bracket the broken-stick fit near a window, and the fit.

    The fit uses the checkpoints within ``REACH`` widths of [x_start, x_end] (at least
    ``MIN_FLANK`` on each side), and the window becomes the last checkpoint at or before x0
    and the first at or after x1 (the change happened between them, as in the window search);
    then it is refitted on the new neighbourhood until the bracket stops moving. Without a
    qualifying fit the window is returned as it came.
    """
    breaks = None
    for _ in range(MAX_ROUNDS):
        lo, hi = _neighbourhood(x, start, end)
        fit = broken_stick(x[lo:hi + 1], y[lo:hi + 1], peak_x, may_end=hi == x.size - 1)
        if fit is None:
            break
        breaks = fit
        new_start = int(np.searchsorted(x, fit.x0 + 1e-12, side="right")) - 1
        new_end = min(int(np.searchsorted(x, fit.x1 - 1e-12, side="left")), x.size - 1)
        if (new_start, new_end) == (start, end):
            break
        start, end = new_start, new_end
    return start, end, breaks


def _neighbourhood(x: Series, start: int, end: int) -> tuple[int, int]:
    """First and last index of the checkpoints the fit around [start, end] uses."""
    width = x[end] - x[start]
    slack = 1e-9 * (1 + width)  # a checkpoint exactly one width away counts, despite rounding
    lo = min(int(np.searchsorted(x, x[start] - REACH * width - slack, side="left")), max(start - MIN_FLANK, 0))
    hi = max(int(np.searchsorted(x, x[end] + REACH * width + slack, side="right")) - 1,
             min(end + MIN_FLANK, x.size - 1))
    return lo, hi
