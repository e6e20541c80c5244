"""The noise of a series over checkpoints: an AR(1) model that allows for correlated residuals.

Training noise is not independent from checkpoint to checkpoint: the weights at neighbouring
checkpoints share most of their history, so a score wanders rather than jitters. A test that
assumes independent residuals overstates the evidence for a drop (issue 9: 2% of AR(1)
rho = 0.8 series and 7.5% of random walks gave a "window"). Here the residual e_i at the
i-th checkpoint (in checkpoint order, whatever the spacing) follows

    e_i = rho e_{i-1} + u_i,   u_i ~ N(0, sigma^2 (1 - rho^2)),   so Var e_i = sigma^2,
    Cov(e_i, e_j) = sigma^2 rho^|i - j|.

rho and sigma are estimated from the residuals of the model fitted to the series
(:func:`estimate_noise`): a stiff parametric fit (a few parameters over dozens of
checkpoints) leaves slow noise in its residuals, where a flexible smoother would follow it
and hide it. White noise gives rho ~ 0, a random walk rho near 1 (clipped to ``RHO_MAX``,
where the model is a random walk over the span of any window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

# A random walk has rho = 1 and no marginal variance; 0.98 makes the model one over the ~50
# checkpoints that any window and its flanks span (2 sigma^2 (1 - rho^k) ~ k Var d there).
RHO_MAX = 0.98


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


def estimate_noise(residuals: Float[np.ndarray, "checkpoint"], n_params: int = 0,
                   rho_max: float = RHO_MAX) -> NoiseModel:
    """AR(1) noise from the residuals of a least-squares fit with ``n_params`` parameters.

    rho = r_1 + (1 + 3 r_1) / m, the lag-one autocorrelation of the m residuals corrected for
    its small-sample bias (Marriott & Pope 1954: E r_1 ~ rho - (1 + 3 rho) / m), clipped to
    [0, ``rho_max``]; sigma^2 = RSS / (m - n_params). Negative correlation is clipped to 0: it
    would claim that neighbours cancel each other's noise, which overstates evidence. Fewer
    than n_params + 3 residuals give sigma = NaN. A fit that misses part of the signal leaves
    it in the residuals as a slow component, which raises both estimates: the error is on the
    side of "no phase change".
    """
    r = np.asarray(residuals, dtype=np.float64)
    m = r.size
    if m < n_params + 3:
        return NoiseModel(float("nan"), 0.0)
    rss = float(r @ r)
    if rss <= 0:
        return NoiseModel(0.0, 0.0)
    centred = r - r.mean()
    r1 = float(centred[1:] @ centred[:-1] / (centred @ centred))
    rho = float(np.clip(r1 + (1 + 3 * r1) / m, 0.0, rho_max))
    return NoiseModel(math.sqrt(rss / (m - n_params)), rho)


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
