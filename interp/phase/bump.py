"""The loss bump: where the training loss over log tokens is not convex (Olsson et al. 2022).

A loss curve without a phase change, L = a + b t^-alpha, is convex in x = log10 t; the
paper's "bump" is where it is not. The rule is in :func:`loss_bump`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.phase.smoothing import local_linear, log_tokens_and, noise_sd


@dataclass(frozen=True)
class LossBump:
    """Where the smoothed loss over log tokens rises above its lower convex hull."""

    start_tokens: float
    end_tokens: float
    peak_tokens: float
    height: float  # nats above the hull at the peak
    tolerance: float  # nats; the deviation had to exceed this at the peak


def _binned(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of consecutive groups of equal size, at most ``max_points`` of them."""
    size = -(-x.size // max_points)
    if size <= 1:
        return x, y
    n = x.size // size * size  # the last incomplete group is dropped
    return x[:n].reshape(-1, size).mean(1), y[:n].reshape(-1, size).mean(1)


def lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The lower convex hull of the points (x sorted ascending), evaluated at every x."""
    hull: list[int] = []
    for i in range(x.size):
        # Drop the last hull point while it lies on or above the chord to the new point.
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (y[b] - y[a]) * (x[i] - x[a]) >= (y[i] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.interp(x, x[hull], y[hull])


def loss_bump(tokens: np.ndarray, loss: np.ndarray, bandwidth: float = 0.05,
              min_height: float = 0.02, z: float = 4.0, start_tokens: float | None = None,
              end_tokens: float | None = None, max_points: int = 1000) -> LossBump | None:
    """The largest non-convex stretch of the training loss over log10 tokens, or None.

    A loss curve without a phase change, L = a + b t^-alpha, is convex in x = log10 t; the
    paper's "bump" is where it is not: the loss stalls, then falls faster as induction heads
    form. Rule: smooth the loss with :func:`local_linear` (``bandwidth`` decades, 0.05: the
    loss is logged every step, so this averages many points), take the lower convex hull of
    the smoothed points, and find maximal stretches where smoothed - hull > tolerance, with
    tolerance = max(``min_height`` nats, ``z`` * sd of a smoothed point) (the hull hugs the
    lowest noisy points, so pure noise rises ~2-3 sd above it). Report the stretch with the
    largest deviation: its first and last points, its peak and the height there.

    The search starts at ``start_tokens`` or, when None, at the steepest descent of the
    smoothed loss: before it the slope steepens, so the curve is concave there by necessity
    (the initial plateau), which says nothing about a phase change. ``end_tokens`` caps it.
    More than ``max_points`` logged steps are first averaged in groups of equal size (the
    smoother holds [N, N] matrices; equal groups keep the noise of every point the same).
    """
    x, y = _binned(*log_tokens_and(tokens, loss), max_points)
    if x.size < 5:
        return None
    level_map, slope_map = local_linear(x, bandwidth)
    level = level_map @ y
    if start_tokens is None:
        first = int(np.argmin(slope_map @ y))
    else:
        first = int(np.searchsorted(x, np.log10(start_tokens)))
    last = x.size if end_tokens is None else int(np.searchsorted(x, np.log10(end_tokens), "right"))
    if last - first < 3:
        return None
    xs, smooth = x[first:last], level[first:last]
    deviation = smooth - lower_hull(xs, smooth)
    # Each point's own noise: early points are sparse in log tokens and smoothed over fewer
    # steps, so they need a larger tolerance than the dense late ones.
    point_sd = noise_sd(level_map, y) * np.linalg.norm(level_map[first:last], axis=1)
    tolerance = np.maximum(min_height, z * np.nan_to_num(point_sd))
    above = deviation > tolerance
    if not above.any():
        return None
    peak = int(np.argmax(np.where(above, deviation, -np.inf)))
    lo, hi = peak, peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    while hi < xs.size - 1 and above[hi + 1]:
        hi += 1
    return LossBump(float(10 ** xs[lo]), float(10 ** xs[hi]), float(10 ** xs[peak]),
                    float(deviation[peak]), float(tolerance[peak]))
