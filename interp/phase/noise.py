"""The noise of a series over checkpoints: jitter plus a random walk, and the block bootstrap.

Training noise is not independent from checkpoint to checkpoint: the weights at neighbouring
checkpoints share most of their history, so a score wanders rather than jitters. A test that
assumes independent residuals overstates the evidence for a drop (issue 9: 2% of AR(1)
rho = 0.8 series and 7.5% of random walks gave a "window"). The window rule therefore models
the noise as white jitter plus a random walk (:class:`IncrementNoise`), estimated from the
series' own second differences at lags of 1 to 10 checkpoints (:func:`increment_noise`):
the walk's share grows with the lag and the jitter's does not, so both are identified without
a smoother (a smoother follows slow noise and hides it; the AR(1) fit to smoother residuals
that this replaced could not tell rho = 0.5 from a random walk at the default bandwidth).

:class:`NoiseModel` (stationary AR(1)) draws the calibration's correlated nulls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float


@dataclass(frozen=True)
class NoiseModel:
    """AR(1) noise: marginal sd ``sigma`` and lag-one correlation ``rho`` (checkpoint order)."""

    sigma: float
    rho: float

    def covariance(self, n: int) -> Float[np.ndarray, "n n"]:
        """sigma^2 rho^|i-j| for n consecutive checkpoints."""
        index = np.arange(n)
        return self.sigma ** 2 * self.rho ** np.abs(index[:, None] - index[None, :])

    def sd_of(self, weights: Float[np.ndarray, "... n"]) -> np.ndarray:
        """sd of weights @ e for each row of weights (a linear statistic of the series)."""
        return np.sqrt(np.einsum("...i,ij,...j->...", weights, self.covariance(weights.shape[-1]), weights))

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
        """Stationary AR(1) noise paths [*shape, n]."""
        u = rng.standard_normal((*shape, n))
        out = np.empty_like(u)
        out[..., 0] = u[..., 0]
        scale = math.sqrt(1 - self.rho ** 2)
        for i in range(1, n):
            out[..., i] = self.rho * out[..., i - 1] + scale * u[..., i]
        return self.sigma * out


@dataclass(frozen=True)
class IncrementNoise:
    """Noise as white jitter plus a random walk, for contrasts (weights that sum to zero).

    y_i = mu_i + w_i + v_i with w_i ~ N(0, white^2) independent and v a random walk whose steps
    (checkpoint to checkpoint) are N(0, walk^2). Its variogram is gamma(h) = white^2 + walk^2 h / 2
    for h > 0, so for weights a with sum(a) = 0 (a difference of levels, a ramp coefficient)

        Var(a' y) = white^2 sum_i a_i^2 + walk^2 sum_{k < n-1} S_k^2,   S_k = a_0 + ... + a_k.

    A stationary AR(1) with correlation rho is covered from both sides: its short lags look
    white (rho small) or like a walk with step variance 2 sigma^2 (1 - rho) (rho near 1), and
    extrapolating the walk over a window's span overstates its variance, never understates it.
    """

    white: float  # sd of the independent part
    walk: float  # sd of one random-walk step, per checkpoint

    def sd_of(self, weights: Float[np.ndarray, "... n"]) -> np.ndarray:
        """sd of weights @ noise for each row of weights; each row must sum to zero."""
        weights = np.asarray(weights, float)
        partial = np.cumsum(weights, axis=-1)
        if not np.allclose(partial[..., -1], 0.0, atol=1e-9 * max(1.0, float(np.abs(weights).max(initial=0)))):
            raise ValueError("IncrementNoise.sd_of needs contrasts (weights that sum to zero)")
        return np.sqrt(self.white ** 2 * (weights ** 2).sum(-1) + self.walk ** 2 * (partial[..., :-1] ** 2).sum(-1))

    @property
    def positive(self) -> bool:
        """Whether any noise was measured (a series fitted exactly gives none)."""
        return self.white > 0 or self.walk > 0


# Second differences at lags 1..MAX_LAG checkpoints estimate the noise (increment_noise).
# 10 on the tuning draws: shorter lags cannot tell a slow walk from jitter (with 4 lags, 10-26
# points less power on 0.3-0.5-decade drops at 0.02 nats and a worst false-positive rate of 3%
# instead of 1%), longer ones run out of pairs on one side of a window.
MAX_LAG = 10
# Chi-square (1 dof) constants of _robust_mean_square: its median, its 99.9% quantile, and
# E[X | X < that quantile] = P(chi2_3 < q) / P(chi2_1 < q).
CHI2_1_MEDIAN = 0.454936423119572
CHI2_1_Q999 = 10.827566170662733
CHI2_1_TRUNCATED_MEAN = 0.98828


def increment_noise(y: Float[np.ndarray, "checkpoint"], keep: np.ndarray, max_lag: int = MAX_LAG) -> IncrementNoise:
    """White-plus-walk noise of ``y`` from its second differences on the checkpoints ``keep``.

    D_h(i) = y_{i+h} - 2 y_i + y_{i-h} removes the level and any straight-line trend (in
    checkpoint order) exactly, and under :class:`IncrementNoise`

        E[D_h^2] = 6 white^2 + 2 walk^2 h.

    E[D_h^2] is estimated over the triples whose whole span [i-h, i+h] is kept (a window and
    its margin are signal, not noise, and a triple across them would measure the drop) by a
    mean of D_h^2 that leaves out values beyond the 99.9% point implied by their median
    (:func:`_robust_mean_square`), and the estimates for h = 1..``max_lag`` are fitted by
    non-negative weighted least squares, weights n_h / E[D_h^2]^2 (inverse variances up to
    a constant; two passes). Why robust: a bump or a second, smaller drop elsewhere in the
    run spoils the triples that span it. With a bump a third to half the drop's size elsewhere, the
    plain mean found 8 of 20 clear drops, the median 17, this 15; on clean sigmoids the
    median lost ~4-15 points of power that this keeps (tuning draws, docs/PHASE.md).
    Curvature left in D_h raises the estimate: the error is on the side of "no phase change".
    White is nan where fewer than two lags have two triples.
    """
    n = y.size
    gaps = np.cumsum(np.r_[0, ~keep])  # gaps[j] - gaps[i]: checkpoints in [i, j) left out
    lags, means, counts = [], [], []
    for h in range(1, max_lag + 1):
        centre = np.arange(h, n - h)
        whole = gaps[centre + h + 1] - gaps[centre - h] == 0
        if whole.sum() >= 2:
            c = centre[whole]
            second = y[c + h] - 2 * y[c] + y[c - h]
            lags.append(h), means.append(_robust_mean_square(second)), counts.append(c.size)
    if len(lags) < 2:
        return IncrementNoise(float("nan"), 0.0)
    h, m, count = np.array(lags, float), np.array(means), np.array(counts, float)
    if not m.max() > 0:
        return IncrementNoise(0.0, 0.0)  # fitted exactly: a constant or straight-line series
    design = np.stack([np.full_like(h, 6.0), 2.0 * h], axis=1)
    weight = count  # first pass: n_h alone (a common scale of the weights does not matter)
    for _ in range(2):
        coef = _nonnegative_least_squares(design * np.sqrt(weight)[:, None], m * np.sqrt(weight))
        weight = count / np.maximum(design @ coef, 1e-6 * m.mean()) ** 2
    return IncrementNoise(math.sqrt(coef[0]), math.sqrt(coef[1]))


def _nonnegative_least_squares(a: Float[np.ndarray, "m 2"], b: Float[np.ndarray, "m"]) -> Float[np.ndarray, "2"]:
    """argmin |a c - b| over c >= 0, for two columns: the best of the unconstrained fit (if
    non-negative) and the two one-column fits (clipped at 0)."""
    best, best_cost = np.zeros(2), float(b @ b)
    full = np.linalg.lstsq(a, b, rcond=None)[0]
    options = [full] if np.all(full >= 0) else []
    for j in range(2):
        one = np.zeros(2)
        one[j] = max(0.0, float(a[:, j] @ b) / float(a[:, j] @ a[:, j]))
        options.append(one)
    for option in options:
        cost = float(np.sum((a @ option - b) ** 2))
        if cost < best_cost:
            best, best_cost = option, cost
    return best


def block_length(n: int) -> int:
    """Moving-block length for ``n`` residuals: ceil(n^(1/3)) (Kuensch 1989's rate; 5 for 75)."""
    return max(1, math.ceil(n ** (1 / 3)))


def block_bootstrap(residuals: Float[np.ndarray, "checkpoint"], n_boot: int, rng: np.random.Generator,
                    length: int | None = None) -> Float[np.ndarray, "boot checkpoint"]:
    """[n_boot, C] resampled residual paths: moving blocks of ``length`` consecutive residuals.

    Blocks start at uniformly drawn positions and are laid end to end, then cut to C; a block
    keeps the residuals' correlation within it, which resampling single residuals destroys
    (with independent draws, correlated noise gives intervals that are too narrow).
    """
    n = residuals.size
    length = min(block_length(n) if length is None else length, n)
    n_blocks = -(-n // length)
    starts = rng.integers(0, n - length + 1, size=(n_boot, n_blocks))
    index = (starts[..., None] + np.arange(length)).reshape(n_boot, -1)[:, :n]
    return residuals[index]



def _robust_mean_square(d: Float[np.ndarray, "triple"]) -> float:
    """E[d^2] for normal d, robust to a few spoiled values: the mean of d^2 over the values
    below the 99.9% quantile implied by the median (median(d^2) / 0.4549 x 10.83), corrected
    for the truncation. On clean normal data it drops 0.1% of the values and keeps the mean's
    efficiency; the triples that span a bump or a second drop are dropped instead of read as
    noise."""
    square = d * d
    start = float(np.median(square)) / CHI2_1_MEDIAN
    # Never empty: at least half the values are at most the median, which is below the cut.
    inlier = square[square <= CHI2_1_Q999 * start]
    return float(inlier.mean()) / CHI2_1_TRUNCATED_MEAN
