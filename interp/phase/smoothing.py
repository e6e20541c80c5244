"""Smoothing a series over checkpoints: one local-linear Gaussian-kernel regression in log tokens.

:func:`local_linear` gives the smoothed value and its derivative at each checkpoint as linear
maps of the raw series (hat matrices), so the noise of anything derived from them follows
from the noise of the series (:mod:`interp.phase.noise`) and a bootstrap is a matrix product.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

# Gaussian kernel sd in decades. The default run's ICL drop takes ~0.08 decades (2.8M -> 3.3M
# tokens) on checkpoints 0.02-0.03 decades apart whose scores differ by ~0.1 nats from
# neighbour to neighbour: 0.03 averages ~5 checkpoints there without washing the drop out.
# The window's sensitivity to this number is tested on the stored runs (0.02-0.05 on the
# default run, 0.02-0.06 on the Markov run; docs/PHASE.md says where it moves).
BANDWIDTH = 0.03
# Every kernel spans at least this many neighbours, so that sparse (log-spaced) early
# checkpoints are still smoothed instead of being fitted exactly.
MIN_NEIGHBOURS = 2

Matrix = Float[np.ndarray, "checkpoint checkpoint"]
Series = Float[np.ndarray, "checkpoint"]


def local_linear(x: Series, bandwidth: float = BANDWIDTH, min_neighbours: int = MIN_NEIGHBOURS
                 ) -> tuple[Matrix, Matrix]:
    """Hat matrices (level [C, C], slope [C, C]) of a local-linear Gaussian-kernel smoother.

    At checkpoint i, with weights w_j = exp(-(x_j - x_i)^2 / 2 h_i^2), fit y ~ a + b (x - x_i)
    by weighted least squares: level_i = a, slope_i = b. Both are linear in y, so
    level = L @ y and slope = S @ y. The kernel width is h_i = max(bandwidth, distance from
    x_i to its ``min_neighbours``-th nearest checkpoint): local linear (rather than a moving
    average) keeps the level unbiased on a slope and at the ends of the run.
    """
    dist = x[None, :] - x[:, None]  # [i, j] = x_j - x_i
    k = min(min_neighbours, len(x) - 1)
    widths = np.maximum(bandwidth, np.sort(np.abs(dist), axis=1)[:, k])
    w = np.exp(-0.5 * (dist / widths[:, None]) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    centred = dist - (w * dist).sum(axis=1, keepdims=True)  # x_j - weighted mean of x
    sxx = (w * centred ** 2).sum(axis=1, keepdims=True)
    slope = w * centred / sxx
    level = w + slope * (0 - (w * dist).sum(axis=1, keepdims=True))  # a = mean_y + b (x_i - mean_x)
    return level, slope


def noise_sd(level_map: Matrix, y: Series) -> float:
    """Noise sd of a series around its smooth: sqrt(RSS / (n - 2 tr L + tr L'L)).

    The usual variance estimate of a linear smoother y_hat = L y (the denominator is the
    residual degrees of freedom), valid for independent noise. It is what the loss-bump rule
    uses; the window uses :func:`interp.phase.noise.increment_noise`, which allows for
    correlated noise, and the lag a moving-block bootstrap.
    """
    residuals = y - level_map @ y
    dof = y.size - 2 * np.trace(level_map) + np.sum(level_map ** 2)
    if dof <= 0:
        return float("nan")
    return float(np.sqrt(residuals @ residuals / dof))


def log_tokens_and(tokens: np.ndarray, *series: np.ndarray) -> tuple[np.ndarray, ...]:
    """log10(tokens) and the series at checkpoints with tokens > 0 and finite values, sorted.

    Checkpoints at 0 tokens are dropped: log10(0) is undefined and the initialisation says
    nothing about when something changed.
    """
    tokens = np.asarray(tokens, dtype=np.float64)
    arrays = [np.asarray(s, dtype=np.float64) for s in series]
    keep = (tokens > 0) & np.all([np.isfinite(a) for a in arrays], axis=0)
    order = np.argsort(tokens[keep], kind="stable")
    return (np.log10(tokens[keep][order]), *(a[keep][order] for a in arrays))


def vertex(x: Series, values: Float[np.ndarray, "batch checkpoint"], i: np.ndarray) -> np.ndarray:
    """x of the vertex of the parabola through (x, values) at i-1, i, i+1 (i interior).

    Refines an argmin between checkpoints; clamped to [x_{i-1}, x_{i+1}]. Works row-wise for
    values [B, C] and i [B].
    """
    rows = np.arange(values.shape[0])
    x0, x1, x2 = x[i - 1], x[i], x[i + 1]
    y0, y1, y2 = values[rows, i - 1], values[rows, i], values[rows, i + 1]
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x1 - 0.5 * num / den
    at = np.where(np.isfinite(at), at, x1)
    return np.clip(at, x0, x2)
